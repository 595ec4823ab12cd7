"""sampleplan's HTTP service: the FastAPI app, its catalogs and its storage.

Imported as ``sampleplan.service``; it needs the ``server`` extra. Importing this package
itself is cheap; :func:`sampleplan.service.main.create_app` builds the app.
"""
