"""pi-sandbox-runtime's Python client (standard library only)::

    from pi_sandbox import SandboxClient

    client = SandboxClient("https://sandbox.example.com", token)
    print(client.exec("uname -a").stdout)
    with client.create_sandbox() as sb:
        sb.write("hello.txt", b"hi")
        print(sb.execute("cat hello.txt").output)
"""

from .client import Sandbox, SandboxClient
from .errors import CLIENT_ERROR_CODES, SandboxApiError
from .ports import Ports
from .processes import OutputChunk, Process, Processes
from .sessions import SessionManager, sandbox_name
from .types import ChatResponse, ExecResult, ExecuteResponse, FileEntry, SandboxInfo, ToolCall

__all__ = [
    "CLIENT_ERROR_CODES",
    "ChatResponse",
    "ExecResult",
    "ExecuteResponse",
    "FileEntry",
    "OutputChunk",
    "Ports",
    "Process",
    "Processes",
    "Sandbox",
    "SandboxApiError",
    "SandboxClient",
    "SandboxInfo",
    "SessionManager",
    "ToolCall",
    "sandbox_name",
]
__version__ = "0.2.0"
