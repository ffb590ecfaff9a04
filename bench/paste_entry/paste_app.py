"""Expose config/examples/paste-stack/production.ini as a module-level WSGI app, for
servers (granian) that cannot load a PasteDeploy file themselves."""

import logging.config
import os

from paste.deploy import loadapp

INI = os.path.join(os.path.dirname(__file__), "..", "..", "config", "examples", "paste-stack",
                   "production.ini")
INI = os.path.abspath(INI)
logging.config.fileConfig(INI, disable_existing_loggers=False)
application = loadapp("config:" + INI, name="main")
