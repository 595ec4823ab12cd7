"""sampleplan: sampling plans for imbalanced datasets, as a service and a torch Sampler.

The distribution installs one import package with four parts:

- :mod:`sampleplan.core`: the pure sampling core (counting, weighting, drawing, dealing,
  statistics), shared by the service and the client's offline fallback;
- :mod:`sampleplan.service`: the FastAPI service (the ``server`` extra);
- :mod:`sampleplan.client`: the HTTP client and the torch samplers;
- :mod:`sampleplan.cli`: the ``sampleplan`` command.

and, for the trainers that are optional extras, :mod:`sampleplan.integrations`
(``SamplePlanTrainer`` for Hugging Face ``transformers``).

Importing this package is cheap: it pulls in none of them.
"""

__version__ = "0.1.0"
