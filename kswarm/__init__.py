"""The ``kswarm`` command line, above the four packages: ``evaluators`` (verify and time one candidate),
``proposers`` (write candidates), ``search`` (the campaign loop, the population, export) and ``cluster`` (Ray)."""
