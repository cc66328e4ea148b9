"""The first-run demo: train an audio path against a frozen text+image bridge and measure CodeBind's claims.

Run it with ``codebind-demo`` (``--quick`` for CI). ``data`` builds and caches the embedded dataset,
``processing`` turns dataset rows into model inputs for the path trainer, ``train`` holds the two stages and the arms,
``evaluate`` the metrics, ``plots`` the figures, ``run`` the CLI.
"""
