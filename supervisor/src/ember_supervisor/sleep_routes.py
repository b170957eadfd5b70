"""HTTP routes of sleeping replicas, on the supervisor's server (`main`), registered in its route tables
like `POST /checkpoint`, so every check the server applies to mutating routes applies to these.

  POST /sleep   body (JSON, optional):
                  {}                          the configured tier (`sleep_tier`; auto: sleep on a GPU,
                                              else freeze)
                  {"level": 1} or {"level": 2}  vLLM sleep mode at that level (tier sleep)
                  {"tier": "sleep", "level": 1} the same, spelled out
                  {"tier": "suspend"}         sleep level 1, then the CUDA driver's suspend (GPU freed)
                  {"tier": "freeze"}          the CPU stand-in: the engine's tree frozen
                200 {"state": "asleep", "tier", "level", "sleep_s", "phases_s", ...}
                400 a body that names a wrong field or a tier this machine cannot do (nothing touched)
                409 the engine is not serving (asleep already, starting, waking, failed, checkpointing)
                500 {"error", "reason", "state"}: the sleep failed; state "serving" when the engine was
                    put back, "failed" when it no longer answers
  POST /wake    body optional: {"canary": true|false} (default: the configured `wake_canary`)
                answers only once the engine answers its health path (and the canary matched)
                200 {"state": "serving", "tier", "wake_s", "phases_s"}
                409 the engine is not asleep
                503 {"error", "reason", "detail", "state": "failed"}: the wake failed or timed out;
                    reasons: engine_exited, timeout, engine_error, engine_unreachable, driver_error,
                    freeze_failed, canary_mismatch, unexpected. The engine is ended; the operator
                    replaces the replica (its fallback, once).
  GET  /state   {"state", "tier", "failure"} (also in GET /startup as "engine")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ember_supervisor.engine_state import WrongState
from ember_supervisor.sleep import Refused, Sleeper, SleepRequest, StepFailed, WakeRequest

Answer = tuple[int, str]
PostRoute = Callable[[bytes], Answer]
GetRoute = Callable[[], Answer]
M = TypeVar("M", bound=BaseModel)


def post_routes(sleeper: Sleeper) -> dict[str, PostRoute]:
    return {"/sleep": lambda body: _sleep(sleeper, body), "/wake": lambda body: _wake(sleeper, body)}


def get_routes(sleeper: Sleeper) -> dict[str, GetRoute]:
    return {"/state": lambda: (200, json.dumps(sleeper.state.as_dict()))}


def _parse(model: type[M], body: bytes) -> M:
    return model.model_validate_json(body.strip() or b"{}")


def _bad_body(e: ValidationError) -> Answer:
    msgs = [f"{'.'.join(str(x) for x in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()]
    return 400, json.dumps({"error": "; ".join(msgs)})


def _sleep(sleeper: Sleeper, body: bytes) -> Answer:
    try:
        req = _parse(SleepRequest, body)
        return 200, json.dumps(sleeper.sleep(req), default=str)
    except ValidationError as e:
        return _bad_body(e)
    except Refused as e:
        return 400, json.dumps({"error": str(e)})
    except WrongState as e:
        return 409, json.dumps({"error": str(e), "state": e.state.value})
    except StepFailed as e:
        return 500, json.dumps(
            {"error": str(e)[:4000], "reason": e.reason, "state": sleeper.state.state.value}
        )


def _wake(sleeper: Sleeper, body: bytes) -> Answer:
    try:
        req = _parse(WakeRequest, body)
        return 200, json.dumps(sleeper.wake(req), default=str)
    except ValidationError as e:
        return _bad_body(e)
    except WrongState as e:
        return 409, json.dumps({"error": str(e), "state": e.state.value})
    except StepFailed as e:
        return 503, json.dumps(
            {"error": str(e)[:4000], "reason": e.reason, "detail": e.detail[:4000], "state": "failed"}
        )
