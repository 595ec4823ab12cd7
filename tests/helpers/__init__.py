"""What the tests share, a module per concept; conftest.py files hold only fixtures.

- ``servers``: a free loopback port, uvicorn in a thread (``LiveServer``), ``sampleplan
  serve`` in a process of its own (``ServerProcess``).
- ``databases``: PostgreSQL's admin URL, whether a server answers, scratch databases.
- ``relay``: a TCP relay on loopback that can stop forwarding (a database that hangs).
- ``reference``: the classic recipe written with torch only, the oracle of every stream.
- ``datasets``: a small imbalanced dataset and the classic recipe's loader over it.
- ``philox``, ``statistics``: Philox4x64-10 in plain integers; chi-square limits.
- ``batches_spec``: the batch definitions' mixing, keyed permutation and keys, written out.
- ``docs_blocks``: the Python blocks of README.md and of the guide's pages, read from them.
- ``browser``: headless Chromium's flags and the log of what the pages asked for.
- ``ranks``: what each process of the multi-process tests runs.
"""
