"""Integrations with training libraries, each an optional extra.

- :mod:`sampleplan.integrations.transformers`: ``SamplePlanTrainer``, a Hugging Face
  ``transformers.Trainer`` drawing from a plan (``pip install 'sampleplan[transformers]'``).

Importing this package is cheap: it imports none of them.
"""
