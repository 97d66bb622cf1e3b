"""importer: import missing TV series and episode data from the TVmaze API.

Start a run from Python the way the CLI does::

    from importer.control import start_run
    run_id = start_run("episodes", batch_size=200, delay=5)

The worker is ``dramatiq importer.actors``; see README.md.
"""

__version__ = "0.1.0"
