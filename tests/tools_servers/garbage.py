"""Not an MCP server: it writes words to stderr and garbage to stdout instead of JSON-RPC, then waits.

Locus must show it as failed, with its stderr tail, while the other servers keep working.
"""

import sys
import time

sys.stderr.write("garbage server: starting up\ngarbage server: about to print nonsense\n")
sys.stderr.flush()
print("Hello! I am not JSON-RPC at all.", flush=True)
print("<html><body>oops</body></html>", flush=True)
time.sleep(600)
