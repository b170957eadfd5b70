"""The autoscaling policy (pure): ``decide(spec, observation, state) -> (decision, new_state)``.

No clock, no I/O, no randomness: the time is ``obs.now`` and everything the policy remembers is in
``AutoscalerState`` (persisted in status, so a restarted operator continues where it stopped). The
anchors are Knative's KPA (stable/panic windows, panic threshold, scale-down delay as the max of the
recent recommendations) and Ray Serve's policy (state in, state out; up/down steps).

Notation, per decision at time t: n = current replicas (starting ones included), r = ready replicas,
S / P = stable / panic window, D = scale-down delay, T = obs.time_to_ready_s (the fastest start
path), Δ = decision interval, u = slo.targetUtilization, f = learned capacity factor (state).

0. **Held requests start replicas at once.** While no replica is ready and activators hold h > 0
   requests (``obs.held``, pushed by the activator, not scraped), the count goes to
   ``min(max(1, ceil(h / (u c_k))), n + maxScaleUpStep)`` (bounded) if that is more than n, reason
   ``ScaleFromZero``, whatever the metrics say: at zero there are none. Held requests also count as
   in flight in the windows below (k includes h).
1. **Unknowns hold.** If the metrics source failed (``metrics_ok`` False) or QPS, running or waiting
   is None, the count is held (clamped into bounds only), reason ``MetricsUnavailable`` (at zero,
   with Prometheus answering, ``ScaledToZero``: no replica means no series, not a failure); the held
   count is recorded as a recommendation, so no scale-down can follow before D of known data.
   TTFT/ITL may be None (no request finished its first token in the window): no SLO signal then.
2. **Windows.** The state keeps samples (t, q_p, k) of the panic-window QPS and the in-flight count
   (running + waiting) for the last S seconds. k_S, k_P are their means over S and P.
3. **Trend and forecast (time-to-ready aware).** A least-squares line q(τ) = a + b (τ - t) through the
   samples' q_p over S (at least 3 samples) gives the level a now and the slope b. New replicas
   started now serve from t + T, and the next decision comes at t + Δ, so the policy sizes for
   ``q_f = max(q_S, min(a + max(b, 0) (T + Δ), 1.5 max(q_p, a)))``, clipped at 0: the trend only
   ever adds (scale-ups anticipate; scale-downs wait for the demand itself to fall), and is capped at
   +50% of the current rate, because a step looks like a steep ramp to a line fit and extrapolating
   it over a minute would overshoot several-fold.
4. **Capacity per replica.** In QPS: ``c_q = targetQPSPerReplica * f`` if set, else
   ``c_q = targetInFlightPerReplica / W * f``, where W is the learned time a request is in flight
   (Little's law, W = k_S / q_S, an EWMA updated only while the SLO holds). In flight:
   ``c_k = targetInFlightPerReplica * f``. Plans use u of each (headroom for bursts).
5. **Recommendations**, each a replica count:
   - demand: ``ceil(q_f / (u c_q))`` and ``ceil(k_S / (u c_k))``;
   - SLO: with ``L = max(ttft_p95 / ttft_target, itl_p95 / itl_target)`` (relative to a learned
     floor, step 8), if L > 1 then
     ``max(n, ceil(max(r, 1) * min(L, 2)))``: capacity grows in proportion to the breach (capped at
     doubling per decision), on top of the ready replicas (starting ones are already on the way), and
     a breach never lets the count fall;
   - queue: if waiting w > maxQueuePerReplica m times r, ``r + ceil((w - m r) / max(m, 1))``;
   - panic: if ``max(k_P / (u c_k), q_p / (u c_q)) >= panicThreshold * max(r, 1)``, the policy panics
     until t + S: it sizes for the panic-window demand and never scales down meanwhile.
   The recommendation R is their max, clamped into [minReplicas, maxReplicas]; R = 0 only when there
   is no demand at all (q_S = k_S = w = 0) and minReplicas is 0.
6. **Stabilisation.** R is appended to ``state.recommendations`` (pairs older than D dropped).
   - Up (R > n): at once, at most maxScaleUpStep; from 0 to at least 1 on any demand (the first
     request waits in the queue, it does not fail).
   - Tolerance: |R - n| <= tolerance * n is ignored (no SLO breach only).
   - Down (R < n): only if the window covers D (the oldest kept pair is at least D - Δ old) and
     every recommendation in it is below n (Knative's scale-down delay: go to the max of the
     window), not in panic. Cost-aware: scaling down too early costs a re-scale-up of T, so
     ``D = min(scaleDownDelaySeconds, max(2Δ, 4T))`` (eager with sleeping replicas, the spec's
     delay with cold starts), and the excess E = n - max(window) drains by
     ``max(maxScaleDownStep, ceil(s E))`` per decision, s = 1 if T <= Δ else 1/2. 1 -> 0 also needs no request for
     scaleToZeroAfterSeconds (default: D), tracked by ``state.lastRequestTime``.
   - Bounds are applied last, so they always hold.
7. **Learning** (new state only, never the current decision, so more load never gives fewer
   replicas): W as above; f shrinks by 10% (down to 0.25) when the SLO is breached with all
   replicas ready while the demand recommendation said they were enough; f recovers by 1% per
   decision (up to 1) while L < 0.8, or while a learned floor (step 8) holds the SLO signal silent
   (it then says nothing about capacity: without this, breaches over the floor at more load ratchet
   f down for good).

8. **Latency floor** (new state only). Some latency does not respond to capacity: a prompt whose
   prefill alone takes longer than the TTFT target is over it on an idle replica, and a p95 over a
   mix with >= 5% of them stays over it at any count. When the SLO signal scales up (reason
   SLOBreached, which then adds at least 25%), a probe records the in-flight load per ready replica
   K0 and L0 = L; while it runs the SLO signal adds nothing more. Once the probe's replicas are
   ready and T + S/2 has passed: if L fell under 0.9 L0, capacity was missing (nothing learned); if
   not and the load per replica fell to <= 0.8 K0, the floor F = max(F, min(L0, L)) is learned,
   measured up to load K = max(K, K0), and f is restored to its value at the probe's start; if the
   load did not fall that far (a step capped by maxScaleUpStep), the next SLO step continues the
   same probe. At maxReplicas no scale-up is possible, so a breach there is itself a probe's end state
   (a new probe with K0 and L0 taken now, or the continuation of one whose last step stopped at the
   maximum, with its base): once the replicas are ready and T + S/2 has passed, if L did not fall
   under 0.9 L0 and the demand at the probe's f needs at most 0.8 of the replicas (the load per replica
   is well under the load-tested target, so capacity is not what is missing), the floor is learned as
   above, up to the larger of K0 and the load now; the count then falls to demand after the delay. If
   the demand needs more than that, nothing is learned and the probe starts again (the breach may be
   capacity the maximum does not allow). A probe is dropped when the breach goes or T + 300 s pass.
   With a floor, the SLO signal is silent while the load per ready replica is <= 1.1 K (sizing is
   by demand) and acts on L / max(1, 1.1 F) above it; the Decision says ``sloAttainable: false`` with the floor, and the
   handler sets the condition SLOAttainable=False. A p95 under F (still over target) lowers F slowly
   (weight 0.01); the floor is forgotten once the SLO has held for a whole stable window.

Reasons: SLOBreached, Panic, QueueBuilding, DemandRising, ScaleFromZero, DemandFalling,
ScaleDownDelayed, Idle, ScaledToZero, Hold, AtMax, AtMin, MetricsUnavailable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from ember.api.v1alpha1 import AutoscalerState, Decision, InferenceServiceSpec, Scaling
from ember.policy.observation import Observation
from ember.policy.slo import Targets, targets

REASONS = (
    "SLOBreached", "Panic", "QueueBuilding", "DemandRising", "ScaleFromZero", "DemandFalling",
    "ScaleDownDelayed", "Idle", "ScaledToZero", "Hold", "AtMax", "AtMin", "MetricsUnavailable",
)  # fmt: skip
MAX_SAMPLES = 240  # bounds the persisted state whatever the windows and interval are
W_EWMA = 0.2  # weight of a new service-time observation
FACTOR_MIN, FACTOR_SHRINK, FACTOR_GROW = 0.25, 0.9, 1.01
# a floor: after capacity was added, the in-flight load per ready replica fell to at most PROBE_LOAD of
# what it was and the worst p95 / target stayed above PROBE_KEEP of its value
PROBE_LOAD, PROBE_KEEP = 0.8, 0.9
# with a floor F measured up to a load K per replica: under K x this the SLO signal is silent, over it
# the signal acts only on the part of p95 / target above F x this
FLOOR_MARGIN = 1.1
PROBE_GIVE_UP_S = 300.0
FLOOR_DECAY = 0.01  # weight of a p95 under the floor (still over target) in the floor's estimate  # a probe whose replicas never all became ready is dropped after T + this
EPS = 1e-9
TREND_CAP = 1.5
DELAY_PER_TTR = 4.0  # the scale-down delay used: at most 4 re-scale-up times (at least 2 intervals)
DRAIN_SHARE = 0.5  # of the excess drained per decision when a re-scale-up takes longer than one


def scale_down_delay(spec: InferenceServiceSpec, obs: Observation) -> float:
    """Step 6's D: the spec's delay, shortened where a re-scale-up is cheap (see the module docstring)."""
    sc = spec.scaling
    floor_s = 2.0 * sc.decision_interval_seconds
    return float(min(sc.scale_down_delay_seconds, max(floor_s, DELAY_PER_TTR * obs.time_to_ready_s)))


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _unix(d: datetime | None) -> float | None:
    return None if d is None else d.timestamp()


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - 1e-6))  # 2.0000001 replicas is 2


def _clamp(n: int, sc: Scaling) -> int:
    return max(sc.min_replicas, min(sc.max_replicas, n))


def linear_fit(points: list[tuple[float, float]], at: float) -> tuple[float, float]:
    """Least-squares line through (t, y): (value at `at`, slope). Fewer than 3 points: (last y, 0)."""
    if len(points) < 3:
        return (points[-1][1] if points else 0.0), 0.0
    n = len(points)
    mt = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mt) ** 2 for p in points)
    if sxx <= EPS:
        return my, 0.0
    b = sum((p[0] - mt) * (p[1] - my) for p in points) / sxx
    return my + b * (at - mt), b


@dataclass(frozen=True)
class Signals:
    """Everything the recommendation is computed from, for the decision record too."""

    qps: float
    qps_panic: float
    in_flight_stable: float
    in_flight_panic: float
    waiting: float
    level_qps: float
    trend_qps_per_s: float
    forecast_qps: float
    capacity_qps: float | None  # per replica, before u
    capacity_in_flight: float  # per replica, before u
    slo_ratio: float | None  # L: worst of p95 / target
    samples: list[list[float]]
    slo_excess: float | None = None  # L over the learned floor (L itself while no floor is known)

    @property
    def breached(self) -> bool:
        """The SLO signal asks for capacity: over target and over the floor capacity did not move."""
        return self.slo_excess is not None and self.slo_excess > 1.0


@dataclass(frozen=True)
class Recommendation:
    replicas: int  # unbounded
    reason: str  # which signal set it
    parts: dict[str, int]
    panic: bool


def signals(spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState, tg: Targets) -> Signals:
    sc = spec.scaling
    assert obs.qps is not None and obs.in_flight is not None and obs.waiting is not None
    q_p = obs.qps if obs.qps_panic is None else obs.qps_panic
    k = obs.in_flight + obs.held
    kept = [s for s in state.samples if obs.now - sc.stable_window_seconds < s[0] < obs.now - EPS]
    samples = [*kept[-(MAX_SAMPLES - 1) :], [obs.now, round(q_p, 4), round(k, 3)]]
    k_s = sum(s[2] for s in samples) / len(samples)
    panic = [s[2] for s in samples if s[0] > obs.now - sc.panic_window_seconds - EPS]
    span = samples[-1][0] - samples[0][0]
    # a trend needs the panic window covered at least; a 2-point slope is noise
    level, slope = (
        linear_fit([(s[0], s[1]) for s in samples], obs.now)
        if span >= sc.panic_window_seconds
        else (q_p, 0.0)
    )
    horizon = obs.time_to_ready_s + sc.decision_interval_seconds
    # a step looks like a steep ramp: the extrapolation is capped at TREND_CAP x the current rate
    trend = min(level + max(slope, 0.0) * horizon, TREND_CAP * max(q_p, level))
    forecast = max(0.0, obs.qps, trend)
    f = state.capacity_factor
    if sc.target_qps_per_replica is not None:
        cap_q: float | None = sc.target_qps_per_replica * f
    elif state.service_time_s:
        cap_q = sc.target_in_flight_per_replica / state.service_time_s * f
    else:
        cap_q = None
    ratios = [
        v / t for v, t in ((obs.ttft_p95_s, tg.ttft_p95_s), (obs.itl_p95_s, tg.itl_p95_s)) if v is not None
    ]
    ratio = max(ratios) if ratios else None
    excess = ratio
    fl, fl_load = state.latency_floor_ratio, state.latency_floor_load
    if ratio is not None and fl is not None:
        if k_s / max(obs.ready_replicas, 1) <= (fl_load or 0.0) * FLOOR_MARGIN:
            excess = min(ratio, 1.0)  # at this load per replica, capacity was shown not to move p95
        else:
            excess = ratio / max(1.0, fl * FLOOR_MARGIN)  # more load than measured: act over the floor
    return Signals(
        qps=obs.qps, qps_panic=q_p, in_flight_stable=k_s, in_flight_panic=sum(panic) / len(panic),
        waiting=obs.waiting, level_qps=max(0.0, level), trend_qps_per_s=slope, forecast_qps=forecast,
        capacity_qps=cap_q, capacity_in_flight=sc.target_in_flight_per_replica * f,
        slo_ratio=ratio, samples=samples, slo_excess=excess,
    )  # fmt: skip


def recommend(
    spec: InferenceServiceSpec, obs: Observation, sig: Signals, tg: Targets, probing: bool = False
) -> Recommendation:
    """Step 5 of the module docstring: the replica count each signal asks for, and their max."""
    sc, u = spec.scaling, tg.utilization
    n, r = obs.current_replicas, obs.ready_replicas
    parts: dict[str, int] = {"DemandRising": _ceil(sig.in_flight_stable / (u * sig.capacity_in_flight))}
    panic_need = sig.in_flight_panic / (u * sig.capacity_in_flight)
    if sig.capacity_qps is not None:
        parts["DemandRising"] = max(parts["DemandRising"], _ceil(sig.forecast_qps / (u * sig.capacity_qps)))
        panic_need = max(panic_need, sig.qps_panic / (u * sig.capacity_qps))
    if sig.breached and sig.slo_excess is not None:
        # while a probe tests whether the last SLO scale-up moved p95, nothing more is added for it
        # and a step adds at least 1 / PROBE_LOAD, so that the probe it starts can tell
        grow = 1.0 if probing else min(max(sig.slo_excess, 1.0 / PROBE_LOAD), 2.0)
        parts["SLOBreached"] = max(n, _ceil(max(r, 1) * grow))
    m = sc.max_queue_per_replica
    if sig.waiting > m * r:
        parts["QueueBuilding"] = r + _ceil((sig.waiting - m * r) / max(m, 1))
    panic = panic_need >= sc.panic_threshold * max(r, 1) and panic_need > 0
    if panic:
        parts["Panic"] = _ceil(panic_need)
    best = max(parts.values())
    reason = next(
        k for k in ("SLOBreached", "Panic", "QueueBuilding", "DemandRising") if parts.get(k) == best
    )
    if best == 0 and (sig.qps > 0 or sig.in_flight_stable > 0 or sig.waiting > 0):
        best = 1  # any demand at all keeps (or brings back) one replica
    return Recommendation(best, reason, parts, panic)


def _window(recs: list[list[float]], now: float, delay_s: float) -> list[list[float]]:
    """The recommendations of the last `delay_s` seconds plus the newest one made before them, so that
    the kept history shows whether it covers the whole delay however far apart decisions were. The loop
    decides when it wakes (events, resync), which can be less often than decisionIntervalSeconds: with
    only the window kept, a 20 s delay sampled every 5 s was never seen covered and scale-down never
    came (found by the kind e2e test)."""
    inside = [p for p in recs if p[0] > now - delay_s - EPS]
    before = [p for p in recs if p[0] <= now - delay_s - EPS]
    return before[-1:] + inside


def _hold(
    spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState
) -> tuple[Decision, AutoscalerState]:
    sc = spec.scaling
    n = obs.current_replicas
    target = _clamp(n, sc)
    recs = _window(state.recommendations, obs.now, scale_down_delay(spec, obs))
    new = state.model_copy(
        update={"recommendations": [*recs[-(MAX_SAMPLES - 1) :], [obs.now, float(target)]]}
    )
    missing = ", ".join(obs.missing) or "inputs unknown"
    reason, message = "MetricsUnavailable", f"holding {target}: metrics unavailable ({missing})"
    if n == 0 and (obs.metrics_ok or obs.unavailable in ("NoData", "PartialData")):
        # at zero with Prometheus answering there is nothing to measure: not a metrics failure
        # (the alert on MetricsUnavailable stays silent); held requests bring it back (step 0)
        reason = "ScaledToZero" if target == 0 else "AtMin"
        message = f"holding {target}: no replica, no requests held"
    dec = Decision(
        time=_ts(obs.now), desired_replicas=target, current_replicas=n, reason=reason,
        message=message, start_path=obs.start_path, inputs=_raw_inputs(obs),
    )  # fmt: skip
    return dec, _scaled(new, obs.now, n, target)


def _held_demand(
    spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState
) -> tuple[Decision, AutoscalerState] | None:
    """Step 0: requests held while no replica is ready scale up now, metrics or not."""
    if obs.held <= 0 or obs.ready_replicas > 0:
        return None
    sc, n = spec.scaling, obs.current_replicas
    cap = targets(spec.slo).utilization * sc.target_in_flight_per_replica * state.capacity_factor
    target = _clamp(min(max(1, _ceil(obs.held / cap)), n + sc.max_scale_up_step), sc)
    if target <= n:
        return None
    recs = _window(state.recommendations, obs.now, sc.scale_down_delay_seconds)
    new = state.model_copy(
        update={
            "recommendations": [*recs[-(MAX_SAMPLES - 1) :], [obs.now, float(target)]],
            "last_request_time": _ts(obs.now),
        }
    )
    dec = Decision(
        time=_ts(obs.now), desired_replicas=target, current_replicas=n, reason="ScaleFromZero",
        message=f"{n} -> {target} (ScaleFromZero): {obs.held} requests held by the activator, "
        f"{cap:.1f} in flight per replica, start path {obs.start_path}, ready in ~{obs.time_to_ready_s:.0f} s",
        start_path=obs.start_path, inputs=_raw_inputs(obs),
    )  # fmt: skip
    return dec, _scaled(new, obs.now, n, target)


def _raw_inputs(obs: Observation) -> dict[str, float | None]:
    ms = 1000.0
    return {
        "qps": obs.qps, "qpsPanic": obs.qps_panic,
        "ttftP95Ms": None if obs.ttft_p95_s is None else round(obs.ttft_p95_s * ms, 1),
        "itlP95Ms": None if obs.itl_p95_s is None else round(obs.itl_p95_s * ms, 1),
        "queue": obs.waiting, "running": obs.running, "kvCache": obs.kv_cache,
        "readyReplicas": float(obs.ready_replicas), "timeToReadySeconds": obs.time_to_ready_s,
        "held": float(obs.held),
    }  # fmt: skip


def _scaled(state: AutoscalerState, now: float, n: int, target: int) -> AutoscalerState:
    if target == n:
        return state
    return state.model_copy(
        update={"last_scale_time": _ts(now), "last_scale_direction": 1 if target > n else -1}
    )


def decide(
    spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState
) -> tuple[Decision, AutoscalerState]:
    """One decision; see the module docstring for the algorithm. Pure."""
    if (held := _held_demand(spec, obs, state)) is not None:
        return held
    if not obs.metrics_ok or obs.qps is None or obs.in_flight is None or obs.waiting is None:
        return _hold(spec, obs, state)
    sc, tg = spec.scaling, targets(spec.slo)
    sig = signals(spec, obs, state, tg)
    probing = state.slo_probe is not None and state.slo_probe[1] >= 0
    rec = recommend(spec, obs, sig, tg, probing=probing)
    n, now = obs.current_replicas, obs.now
    want = _clamp(rec.replicas, sc)
    recs = _window(state.recommendations, now, scale_down_delay(spec, obs))
    recs = [*recs[-(MAX_SAMPLES - 1) :], [now, float(want)]]
    active = sig.qps > 0 or sig.in_flight_panic > 0 or sig.waiting > 0
    last_req = now if active or state.last_request_time is None else _unix(state.last_request_time)
    assert last_req is not None
    panic_until = now + sc.stable_window_seconds if rec.panic else _unix(state.panic_until)
    target, reason = stabilise(spec, obs, sig, rec, want, recs, now - last_req, panic_until)
    target = _clamp(target, sc)  # bounds are applied last, so they always hold
    new = state.model_copy(
        update={
            "samples": sig.samples, "recommendations": recs, "last_request_time": _ts(last_req),
            "panic_until": None if panic_until is None or panic_until <= now else _ts(panic_until),
            **learn(spec, obs, sig, rec, state),
            **learn_floor(spec, obs, sig, state, _probe_to(spec, obs, sig, target, reason)),
        }
    )  # fmt: skip
    fl = new.latency_floor_ratio
    dec = Decision(
        time=_ts(now), desired_replicas=target, current_replicas=n, reason=reason,
        message=_message(n, target, reason, sig, obs, tg, fl), start_path=obs.start_path,
        inputs=_inputs(obs, sig, rec, tg), latency_floor_ratio=fl,
        slo_attainable=False if fl is not None else (None if sig.slo_ratio is None else True),
    )  # fmt: skip
    return dec, _scaled(new, now, n, target)


def stabilise(
    spec: InferenceServiceSpec, obs: Observation, sig: Signals, rec: Recommendation, want: int,
    recs: list[list[float]], idle_s: float, panic_until: float | None,
) -> tuple[int, str]:  # fmt: skip
    """Step 6: from the bounded recommendation `want` to the count decided now, and why."""
    sc, n, now = spec.scaling, obs.current_replicas, obs.now
    breached = sig.breached
    if n < sc.min_replicas:
        return max(sc.min_replicas, min(want, n + sc.max_scale_up_step)), "AtMin"
    if n > sc.max_replicas:
        return sc.max_replicas, "AtMax"
    if want > n:
        if n > 0 and not breached and (want - n) <= sc.tolerance * n:
            return n, "Hold"
        target = min(want, n + sc.max_scale_up_step)
        if n == 0:
            return max(1, target), "ScaleFromZero"
        return target, rec.reason
    if want == n:
        if rec.replicas > sc.max_replicas and n == sc.max_replicas:
            return n, "AtMax"
        if rec.replicas < sc.min_replicas and n == sc.min_replicas and not rec.panic and not breached:
            return n, "AtMin"
        return n, "Panic" if rec.panic else ("SLOBreached" if breached else "Hold")
    # want < n: every guard below holds the count
    if rec.replicas < sc.min_replicas and n == sc.min_replicas:
        return n, "AtMin"
    if panic_until is not None and now < panic_until:
        return n, "Panic"
    if want > 0 and (n - want) <= sc.tolerance * n:
        return n, "Hold"
    # the recommendations reach back over the whole delay (see _window), whatever the spacing of decisions
    delay = scale_down_delay(spec, obs)
    covered = delay <= sc.decision_interval_seconds or recs[0][0] <= now - delay + EPS
    allowed = int(max(p[1] for p in recs))
    if not covered or allowed >= n:
        return n, "ScaleDownDelayed"
    # a burst's excess drains in proportion: half per decision, at once where a re-scale-up is quicker
    share = 1.0 if obs.time_to_ready_s <= sc.decision_interval_seconds else DRAIN_SHARE
    target = max(allowed, n - max(sc.max_scale_down_step, _ceil(share * (n - allowed))))
    if target == 0:
        stz = sc.scale_to_zero_after_seconds
        if idle_s + EPS < (sc.scale_down_delay_seconds if stz is None else stz):
            return (n, "Idle") if n == 1 else (1, "Idle")
        return 0, "ScaledToZero"
    return target, "Idle" if rec.replicas == 0 else "DemandFalling"


def learn(
    spec: InferenceServiceSpec, obs: Observation, sig: Signals, rec: Recommendation, state: AutoscalerState
) -> dict[str, float | None]:
    """Step 7: the service time W and the capacity factor f, for the next decisions only."""
    w, f = state.service_time_s, state.capacity_factor
    ok = not sig.breached  # within target, or within a floor that capacity does not move
    covered = sig.samples[-1][0] - sig.samples[0][0] >= spec.scaling.stable_window_seconds / 2
    if ok and covered and sig.qps > 0.05 and sig.in_flight_stable > 0:
        obs_w = sig.in_flight_stable / sig.qps
        w = obs_w if w is None else w + W_EWMA * (obs_w - w)
    steady = obs.ready_replicas == obs.current_replicas > 0
    # (a floor found by a probe restores f to its value at the probe's start: step 8)
    if sig.breached and steady and rec.parts.get("DemandRising", 0) <= obs.ready_replicas:
        f = max(FACTOR_MIN, f * FACTOR_SHRINK)
    elif sig.slo_excess is not None and (
        sig.slo_excess < 0.8 or (state.latency_floor_ratio is not None and not sig.breached)
    ):
        # within a known floor the SLO signal says nothing about capacity: f drifts back to the load test
        f = min(1.0, f * FACTOR_GROW)
    return {"service_time_s": None if w is None else round(w, 4), "capacity_factor": round(f, 4)}


def _probe_to(
    spec: InferenceServiceSpec, obs: Observation, sig: Signals, target: int, reason: str
) -> int | None:
    """The count a probe started (or continued) now tests: an SLO-driven scale-up's target, or, at
    maxReplicas under a breach, the count held there (no scale-up is possible: the probe's end state is
    the fleet as it is; step 8)."""
    n = obs.current_replicas
    if reason == "SLOBreached" and target > n:
        return target
    if sig.breached and n == spec.scaling.max_replicas and target == n:
        return n
    return None


def learn_floor(
    spec: InferenceServiceSpec, obs: Observation, sig: Signals, state: AutoscalerState, probe_to: int | None
) -> dict[str, object]:
    """Step 8: the latency floor, learned by testing whether an SLO-driven scale-up moved p95."""
    now, sc = obs.now, spec.scaling
    fl, fl_load, ok_since = state.latency_floor_ratio, state.latency_floor_load, _unix(state.floor_ok_since)
    probe, found, f0 = _probe(spec, obs, sig, state, probe_to)
    out: dict[str, object] = {}
    if found is not None:
        fl, fl_load = max(fl or 0.0, found[0]), max(fl_load or 0.0, found[1])
        out["capacity_factor"] = round(max(state.capacity_factor, f0), 4)
    if fl is not None and sig.slo_ratio is not None:
        if sig.slo_ratio <= 1.0:
            ok_since = now if ok_since is None else ok_since
            if now - ok_since >= sc.stable_window_seconds:
                fl, ok_since = None, None  # the floor went away: the SLO held for a whole stable window
        else:
            ok_since = None
            if sig.slo_ratio < fl:
                fl = fl + FLOOR_DECAY * (sig.slo_ratio - fl)  # a lower floor is believed slowly
    return {
        **out, "slo_probe": probe, "latency_floor_ratio": None if fl is None else round(fl, 4),
        "floor_ok_since": None if ok_since is None or fl is None else _ts(ok_since),
        "latency_floor_load": None if fl is None or fl_load is None else round(fl_load, 3),
    }  # fmt: skip


def _probe(
    spec: InferenceServiceSpec, obs: Observation, sig: Signals, state: AutoscalerState, probe_to: int | None
) -> tuple[list[float] | None, tuple[float, float] | None, float]:
    """The probe after this decision, and (floor, load up to which it holds) when it found one."""
    now, probe = obs.now, state.slo_probe
    load = sig.in_flight_stable / max(obs.ready_replicas, 1)
    if probe_to is not None and sig.slo_ratio is not None and (probe is None or probe[1] < 0):
        # a new probe, or the next step of one whose last step was too small to tell (same base)
        base = [load, sig.slo_ratio, state.capacity_factor] if probe is None else probe[2:]
        return [now, float(probe_to), *base], None, 0.0
    if probe is None:
        return None, None, 0.0
    t0, to, load0, ratio0, f0 = probe
    if sig.slo_ratio is None or not sig.breached or now > t0 + obs.time_to_ready_s + PROBE_GIVE_UP_S:
        return None, None, 0.0  # the breach went (capacity helped, or the load fell), or it never settled
    settled = now >= t0 + obs.time_to_ready_s + spec.scaling.stable_window_seconds / 2
    if to < 0 or not settled or obs.ready_replicas < to:
        return probe, None, 0.0
    if sig.slo_ratio < PROBE_KEEP * ratio0:
        return None, None, 0.0  # p95 fell with the added capacity: it was missing
    if load > PROBE_LOAD * load0 and not (
        obs.current_replicas >= spec.scaling.max_replicas and _need(spec, sig, state, f0) <= PROBE_LOAD * to
    ):
        return [now, -1.0, load0, ratio0, f0], None, 0.0  # too little added to tell: one more step
    return None, (min(ratio0, sig.slo_ratio), max(load0, load)), f0


def _need(spec: InferenceServiceSpec, sig: Signals, state: AutoscalerState, f0: float) -> float:
    """The replicas the demand needs (unrounded) at the load-tested capacity scaled by f0 rather than by
    the current factor (which a breach shrinks): step 5's demand recommendation before the ceiling."""
    u = targets(spec.slo).utilization
    need = sig.in_flight_stable / (u * sig.capacity_in_flight)
    if sig.capacity_qps is not None:
        need = max(need, sig.forecast_qps / (u * sig.capacity_qps))
    return need * state.capacity_factor / max(f0, EPS)


def _inputs(obs: Observation, sig: Signals, rec: Recommendation, tg: Targets) -> dict[str, float | None]:
    out = _raw_inputs(obs)
    u = tg.utilization
    out.update({
        "inFlightStable": round(sig.in_flight_stable, 3), "inFlightPanic": round(sig.in_flight_panic, 3),
        "levelQps": round(sig.level_qps, 4), "trendQpsPerSecond": round(sig.trend_qps_per_s, 5),
        "forecastQps": round(sig.forecast_qps, 4),
        "capacityPerReplica": None if sig.capacity_qps is None else round(sig.capacity_qps * u, 4),
        "capacityInFlightPerReplica": round(sig.capacity_in_flight * u, 3),
        "sloRatio": None if sig.slo_ratio is None else round(sig.slo_ratio, 4),
        "sloExcess": None if sig.slo_excess is None else round(sig.slo_excess, 4),
        "ttftTargetMs": tg.ttft_p95_s * 1000.0, "itlTargetMs": tg.itl_p95_s * 1000.0,
        "recommended": float(rec.replicas), **{f"desired{k}": float(v) for k, v in rec.parts.items()},
    })  # fmt: skip
    return out


def _message(
    n: int, target: int, reason: str, sig: Signals, obs: Observation, tg: Targets, floor: float | None = None
) -> str:
    head = f"{n} -> {target}" if target != n else f"hold {n}"
    cap = "learning" if sig.capacity_qps is None else f"{sig.capacity_qps * tg.utilization:.2f} req/s"
    demand = (
        f"{sig.qps:.2f} req/s now, {sig.forecast_qps:.2f} forecast in {obs.time_to_ready_s:.0f} s "
        f"({obs.start_path}), {cap} per replica, {sig.in_flight_stable:.1f} in flight, "
        f"{sig.waiting:.0f} waiting"
    )
    slo = "" if sig.slo_ratio is None else f", worst p95/target {sig.slo_ratio:.2f}"
    if floor is not None:
        slo += f" (floor {floor:.2f}: added capacity did not lower it, sized by demand)"
    return f"{head} ({reason}): {demand}{slo}"
