"""The v1 pipeline plan: models (``models``), YAML loading with located errors (``loader``)."""
