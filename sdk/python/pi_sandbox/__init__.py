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
from .types import ChatResponse, ExecResult, ExecuteResponse, FileEntry, SandboxInfo, ToolCall

__all__ = [
    "CLIENT_ERROR_CODES",
    "ChatResponse",
    "ExecResult",
    "ExecuteResponse",
    "FileEntry",
    "Sandbox",
    "SandboxApiError",
    "SandboxClient",
    "SandboxInfo",
    "ToolCall",
]
__version__ = "0.2.0"
