"""The console: line discipline (line.py), interpreter (interpreter.py), sessions (session.py).

See README.md here for the commands and an example session.
"""

from appliance.shell.interpreter import Shell
from appliance.shell.line import LineEditor
from appliance.shell.session import serve_console

__all__ = ["LineEditor", "Shell", "serve_console"]
