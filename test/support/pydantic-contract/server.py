"""An exec server written to pydantic-ai-backends' http contract (its KubernetesPodSandbox,
mode="http"), as a user would ship one in their own image: FastAPI + uvicorn, the token from
SANDBOX_EXEC_TOKEN checked in X-Sandbox-Token, listening on SANDBOX_PORT.

  GET  /health -> {"ready": true}
  POST /exec {"command", "timeout_seconds"} -> {"output" (stdout+stderr, capped), "exit_code", "truncated"}

Two test hooks stand in for a broken third-party server: a command containing
PI_TEST_MALFORMED is answered with text that is not JSON; one containing PI_TEST_HANG is never
answered (the request sleeps).
"""

import hmac
import os
import subprocess
import time

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

TOKEN = os.environ["SANDBOX_EXEC_TOKEN"]
CAP = int(os.environ.get("OUTPUT_CAP_BYTES", "65536"))

app = FastAPI()


class ExecRequest(BaseModel):
    command: str
    timeout_seconds: int = 1800


@app.get("/health")
def health():
    return {"ready": True}


@app.post("/exec")
def run(req: ExecRequest, x_sandbox_token: str = Header(default="")):
    if not hmac.compare_digest(x_sandbox_token.encode(), TOKEN.encode()):
        raise HTTPException(status_code=401, detail="invalid sandbox token")
    if "PI_TEST_MALFORMED" in req.command:
        return PlainTextResponse("this is not the contract's JSON")
    if "PI_TEST_HANG" in req.command:
        time.sleep(3600)
    try:
        p = subprocess.run(
            ["/bin/sh", "-c", req.command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd="/workspace",
            timeout=req.timeout_seconds,
        )
        out, code = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, code = e.output or b"", 124
    return {
        "output": out[:CAP].decode("utf-8", "replace"),
        "exit_code": code,
        "truncated": len(out) > CAP,
    }


if __name__ == "__main__":
    port = int(os.environ.get("SANDBOX_PORT", "8080"))
    uvicorn.run(app, host="0.0.0.0", port=port, log_level="warning")
