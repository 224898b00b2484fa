"""The drill runner: mobilise the network on the real stack and play the volunteers' phones.

Steps (``muster drill run SCENARIO``):

1. start whatever is not running: Kafka, PostgreSQL, the provider simulator and the three services
   (:mod:`deploy.stack`);
2. seed the roster (``scenario.roster``) unless one of that size is present, and wait until
   dispatch's roster projection has caught up;
3. create a city-level operator token (revoked when the drill ends, also on failure) and open the
   scenario's incidents in drill mode through the operator API (``POST /incidents``), each after its
   ``open_after_seconds``;
4. follow the simulator's global message feed (``GET /sim/messages?after=…&wait=…``): a call-out
   message is answered as the responder model draws it (:mod:`muster.drill.responders`), after its
   latency, through the simulator's phone (``POST /sim/phones/{mobile}/reply``, delivered to notify
   as the provider's uplink callback) or a tap on the WeChat link; an assignment confirmation is
   followed by a check-in ("到了") some seconds after the ETA unless the volunteer is a no-show. Only
   the drill's own messages are answered (:func:`is_drill_message`): a live incident beside the drill
   is left alone, and the integrity counts cover only the drill's messages;
5. follow the boards until every requirement is filled or flagged unfilled (or the scenario's
   timeout), let the last replies land, close the incidents, and build the report
   (:mod:`muster.drill.report`) with the integrity counts (:mod:`muster.drill.integrity`).

Everything crosses real HTTP and the real broker; the runner holds no back door into the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from deploy.stack import StackSettings
from muster.drill.integrity import BoardCallOut, PhoneMessage, SentReply, integrity
from muster.drill.responders import ARRIVED_TEXTS, decide
from muster.drill.scenario import IncidentPlan, Scenario
from shared.vocabulary import Level

__all__ = ["DrillState", "classify", "is_drill_message", "run_drill"]

REPLY_CONCURRENCY = 32
"""Phones' reply requests in flight at once (the rest wait their turn, in order)."""
REPLY_TRIES = 10
"""A volunteer whose reply page says 503 (or does not load) tries again, up to this many times in all,
waiting 2, 4, 6 … up to 15 s between tries (about 90 s in all: a service restarting on a loaded machine)."""
ROSTER = StackSettings().url("roster")
DISPATCH = StackSettings().url("dispatch")
SIMULATOR = StackSettings().url("simulator")

_REPLY_CODE = re.compile(r"回复1([0-9A-Za-z]*)\s*接受")


def classify(text: str) -> str:
    """The kind of a message a phone received, read as a volunteer would read it.

    Returns:
        ``auto_answer`` (未能识别您的回复…), ``broadcast`` (调度通知：…), ``callout`` (asks for 回复1…), ``assigned`` (已确认…出勤), ``stand_down`` (人员已满/无需前往/停止前往),
        or ``unknown``.

    """
    if "未能识别您的回复" in text:
        return "auto_answer"
    if "调度通知：" in text:
        return "broadcast"
    if "回复1" in text:
        return "callout"
    if "已确认" in text:
        return "assigned"
    if any(w in text for w in ("无需前往", "停止前往", "人员已满", "事件已结束", "任务已取消", "调度已调整")):
        return "stand_down"
    return "unknown"


TITLE_KEY = 5
"""Characters of an incident's title that a message about it always carries (SMS shortens a title to 6 at least)."""


def is_drill_message(text: str, titles: Any) -> bool:
    """True when ``text`` is a drill message (演练 first, after the SMS signature) about one of ``titles``.

    The runner's phones answer, and its integrity counts cover, only the messages of its own incidents:
    a live incident's messages (no 演练) and other incidents' are left alone.
    """
    body = re.sub(r"^【[^】]*】", "", text)
    return body.startswith("演练") and any(t[:TITLE_KEY] in body for t in titles)


def _log(msg: str) -> None:
    print(f"[drill {datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


@dataclass
class DrillState:
    """What the runner has seen and done during one drill."""

    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    phone_to_volunteer: dict[str, str] = field(default_factory=dict)
    volunteer_skills: dict[str, list[str]] = field(default_factory=dict)
    incidents: dict[str, IncidentPlan] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_message: float = 0.0  # time.monotonic() when the phones last received a message
    sent: list[dict[str, Any]] = field(default_factory=list)
    pending: set[asyncio.Task[Any]] = field(default_factory=set)
    callout_index: dict[str, dict[str, Any]] = field(default_factory=dict)  # volunteer id → latest open call-out
    answered: set[tuple[str, str]] = field(default_factory=set)  # (volunteer id, message out id)
    decided: set[str] = field(default_factory=set)  # call-out ids a phone has decided on
    headers: dict[str, str] = field(default_factory=dict)  # the operator's, for the index refresh
    refreshing: asyncio.Task[dict[str, dict[str, Any]]] | None = None  # the index refresh in flight, shared
    errors: list[str] = field(default_factory=list)
    # Phones' requests in flight at once. Unbounded, thousands queued on one client while notify was down
    # (fault drill), and httpcore's pool then matched them to connections without yielding to the loop.
    reply_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(REPLY_CONCURRENCY))

    def offset(self) -> float:
        return time.monotonic() - self.started


# ---------------------------------------------------------------------------------------- set-up


def _ensure_stack() -> dict[str, str]:
    from deploy import stack

    env = stack.stack_up()
    stack.services_up()
    return env


def _roster_headers() -> dict[str, str]:
    """The roster API's bearer token (``ROSTER_ADMIN_TOKEN`` of the stack's env)."""
    from deploy.stack import stack_env

    return {"Authorization": f"Bearer {stack_env()['ROSTER_ADMIN_TOKEN']}"}


async def _roster_size(http: httpx.AsyncClient) -> int:
    r = await http.get(f"{ROSTER}/volunteers", params={"page_size": 1}, headers=_roster_headers())
    r.raise_for_status()
    return int(r.json()["total"])


async def _seed_roster(scenario: Scenario, http: httpx.AsyncClient) -> None:
    size = await _roster_size(http)
    if size >= scenario.roster.volunteers * 0.9:
        _log(f"roster present ({size} volunteers)")
        return
    _log(f"seeding the roster: {scenario.roster.volunteers} volunteers, {scenario.roster.teams} teams")
    proc = await asyncio.create_subprocess_exec(
        *_muster(), "roster", "seed", "--volunteers", str(scenario.roster.volunteers),
        "--teams", str(scenario.roster.teams), "--seed", str(scenario.roster.seed),
    )
    if await proc.wait() != 0:
        raise RuntimeError("muster roster seed failed")


def _muster() -> list[str]:
    import sys

    return [sys.executable, "-m", "muster"]


async def _load_directory(state: DrillState, http: httpx.AsyncClient) -> None:
    page, size = 1, 1000
    while True:
        r = await http.get(f"{ROSTER}/volunteers", params={"page": page, "page_size": size},
                           headers=_roster_headers())
        r.raise_for_status()
        body = r.json()
        for v in body["items"]:
            vid = str(v["id"])
            if v.get("mobile"):
                state.phone_to_volunteer[v["mobile"]] = vid
            if v.get("wechat_openid"):
                state.phone_to_volunteer[v["wechat_openid"]] = vid
            state.volunteer_skills[vid] = list(v.get("skills", []))
        if page * size >= body["total"]:
            break
        page += 1
    _log(f"phone directory: {len(state.volunteer_skills)} volunteers")


async def _wait_projections(bootstrap: str, timeout: float = 180) -> None:
    """Wait until dispatch's roster projection and notify's contact projection have caught up.

    Caught up = both consumer groups at lag 0 twice in a row, one second apart (the roster's relay
    may still be publishing a fresh seed; a second look makes sure it stopped).
    """
    from shared.lag import consumer_lags
    from shared.topics import ROSTER_CONTACT, ROSTER_PROFILE

    groups = (("dispatch.roster-profiles", ROSTER_PROFILE.name), ("notify.contacts", ROSTER_CONTACT.name))
    deadline = time.monotonic() + timeout
    quiet = 0
    lags: list[int | None] = []
    while time.monotonic() < deadline:
        lags = list((await consumer_lags(bootstrap, groups)).values())
        quiet = quiet + 1 if all(x == 0 for x in lags) else 0
        if quiet >= 2:
            _log("dispatch and notify projections have caught up with the roster")
            return
        await asyncio.sleep(1.0)
    raise RuntimeError(f"projections still behind after {timeout}s: lags {lags}")


async def _operator_token(name: str = "drill-admin") -> str:
    """Create a city-wide operator token named ``name`` and return its secret (raises ``RuntimeError``)."""
    proc = await asyncio.create_subprocess_exec(
        *_muster(), "incident", "token", "create", "--name", name, "--role", "city", "--unit", "330600",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError("could not create an operator token")
    return out.decode().strip().splitlines()[-1].split()[-1]


async def _revoke_token(token: str) -> None:
    """Revoke the drill's operator token by its id (``muster incident token revoke --id``), so none stays valid."""
    from services.dispatch.auth import TOKEN_ID_LENGTH, hash_token

    proc = await asyncio.create_subprocess_exec(
        *_muster(), "incident", "token", "revoke", "--id", hash_token(token)[:TOKEN_ID_LENGTH],
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await proc.wait() != 0:
        _log("could not revoke the drill's operator token: revoke it with `muster incident token revoke`")


# ---------------------------------------------------------------------------------------- phones


async def _reply(state: DrillState, http: httpx.AsyncClient, msg: dict[str, Any], text: str, delay: float,
                 action: str | None = None, eta: int | None = None) -> None:
    """Send one reply as the volunteer would, trying again while the service cannot take it.

    A WeChat reply is a tap on notify's reply page, which is idempotent (one reply per message, action and
    ETA: ``page:{message_id}:{action}:{minutes}``): a page that fails in any way (did not load, cut off
    mid-request by a restart, 5xx) is tapped again. An SMS reply is sent by the simulated phone: tried again
    only when it certainly did not leave (no connection, 503), as a phone does not resend an SMS by itself.
    """
    await asyncio.sleep(delay)
    vid = state.phone_to_volunteer.get(msg["recipient"], "?")
    page = msg.get("channel") == "wechat" and bool(msg.get("url"))
    unsent = httpx.TransportError if page else httpx.ConnectError
    try:
        for attempt in range(REPLY_TRIES):
            try:
                async with state.reply_slots:
                    if page:
                        data = {"action": action or "accept"}
                        if eta is not None:
                            data["eta_minutes"] = str(eta)
                        r = await http.post(msg["url"], data=data)
                    else:
                        r = await http.post(f"{SIMULATOR}/sim/phones/{msg['recipient']}/reply", json={"text": text})
            except unsent:  # the page did not load (or broke off): the volunteer taps again
                if attempt == REPLY_TRIES - 1:
                    raise
                await asyncio.sleep(min(2.0 * (attempt + 1), 15.0))
                continue
            again = r.status_code == 503 or (page and r.status_code >= 500)
            if not again or attempt == REPLY_TRIES - 1:
                break
            # "busy, try again" (the service's database is restarting): tap again
            await asyncio.sleep(min(float(r.headers.get("Retry-After", "2")) * (attempt + 1), 15.0))
        r.raise_for_status()
        state.sent.append({"volunteer_id": vid, "text": text, "at": state.offset(), "channel": msg.get("channel")})
    except httpx.HTTPError as exc:
        state.errors.append(f"reply from {vid} failed: {exc!r}")


def _spawn(state: DrillState, coro: Any) -> None:
    task = asyncio.create_task(coro)
    state.pending.add(task)
    task.add_done_callback(state.pending.discard)


def _on_message(state: DrillState, scenario: Scenario, http: httpx.AsyncClient, msg: dict[str, Any]) -> None:
    if not is_drill_message(msg.get("text", ""), [p.title for p in scenario.incidents]):
        return  # not this drill's: a live incident's call-out stays unanswered by the drill's phones
    kind = classify(msg.get("text", ""))
    msg["kind"] = kind
    state.messages.append(msg)
    vid = state.phone_to_volunteer.get(msg["recipient"])
    if vid is None:
        return
    if kind == "callout":
        entry = state.callout_index.get(vid)
        if entry is None or entry.get("callout_id") in state.decided:
            # The boards are read once a second: this call-out may not be indexed yet, and deciding with the
            # village's rates (or the volunteer's last call-out) would skew the responders' model.
            _spawn(state, _respond_when_indexed(state, scenario, http, msg, vid))
        else:
            _respond(state, scenario, http, msg, vid)
    elif kind == "assigned":
        callout = state.callout_index.get(vid, {})
        arrive = callout.get("arrive_after")
        if arrive is not None:
            text = ARRIVED_TEXTS[hash(vid) % len(ARRIVED_TEXTS)]
            if scenario.responders.walking_speed_m_per_s is not None:
                _spawn(state, _walk_then_arrive(state, scenario, http, msg, vid, text))
            else:
                _spawn(state, _reply(state, http, msg, text, float(arrive), action="arrived"))


async def _walk_then_arrive(state: DrillState, scenario: Scenario, http: httpx.AsyncClient, msg: dict[str, Any],
                            vid: str, text: str) -> None:
    """Check in after walking the way at the scenario's pace: to the patient, or through the AED they fetch.

    The way is the call-out's distance (metres), or an AED run's path (volunteer → AED → patient, from the
    board's roles); the time is metres ÷ ``walking_speed_m_per_s`` × ``walk_time_scale`` seconds.
    """
    model = scenario.responders
    assert model.walking_speed_m_per_s is not None
    entry = state.callout_index.get(vid, {})
    path = entry.get("distance_m")
    incident_id = entry.get("incident_id")
    if incident_id:
        r = await http.get(f"{DISPATCH}/incidents/{incident_id}", headers=state.headers)
        if r.status_code == 200:
            for role in r.json().get("roles", []):
                if str(role["volunteer_id"]) == vid and role.get("path_m") is not None:
                    path = role["path_m"]
    walk = float(path or 0.0) / model.walking_speed_m_per_s * model.walk_time_scale
    await _reply(state, http, msg, text, walk, action="arrived")


async def _respond_when_indexed(state: DrillState, scenario: Scenario, http: httpx.AsyncClient,
                                msg: dict[str, Any], vid: str, tries: int = 3) -> None:
    """Refresh the call-out index (one refresh shared by every phone waiting), then decide (:func:`_respond`).

    After ``tries`` refreshes without a new call-out for ``vid`` (a call-out message sent again, by SMS after
    WeChat), it decides with what the index has.
    """
    for _ in range(tries):
        if state.refreshing is None or state.refreshing.done():
            state.refreshing = asyncio.create_task(_refresh_index(state, http))
        try:
            await asyncio.shield(state.refreshing)
        except Exception as exc:  # the dispatch API failing: decide with what the index has, and say so
            state.errors.append(f"call-out index refresh: {exc!r}")
            break
        entry = state.callout_index.get(vid)
        if entry is not None and entry.get("callout_id") not in state.decided:
            break
    _respond(state, scenario, http, msg, vid)


async def _refresh_index(state: DrillState, http: httpx.AsyncClient,
                         boards: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Read every incident's board into ``boards``, then index the call-outs (:func:`_refresh_callouts`).

    A board that cannot be read keeps its last copy. Returns ``boards``.
    """
    boards = {} if boards is None else boards
    for incident_id in list(state.incidents):
        r = await http.get(f"{DISPATCH}/incidents/{incident_id}", headers=state.headers)
        if r.status_code == 200:
            boards[incident_id] = r.json()
    await _refresh_callouts(state, http, state.headers, boards)
    return boards


def _respond(state: DrillState, scenario: Scenario, http: httpx.AsyncClient, msg: dict[str, Any], vid: str) -> None:
    """Decide a phone's answer to a call-out message from the index's level and skill, and send it later."""
    callout = state.callout_index.get(vid, {})
    if callout.get("callout_id"):
        state.decided.add(callout["callout_id"])
    level = Level(callout.get("level", "village"))
    skill = callout.get("skill")
    if skill is None:
        skills = state.volunteer_skills.get(vid)
        skill = skills[0] if skills else None
    response = decide(scenario.responders, seed=scenario.seed, key=f"{vid}:{msg.get('out_id')}",
                      level=level, skill=skill)
    if response.action == "ignore" or response.text is None:
        return
    code = ""
    if m := _REPLY_CODE.search(msg.get("text", "")):
        code = m.group(1)
    text = response.text
    if code and text in ("1", "2"):
        text = f"{text}{code}"
    msg["response"] = response.action
    _spawn(state, _reply(state, http, msg, text, response.latency_s, action=response.action,
                         eta=response.eta_minutes))
    if response.action == "accept" and not response.no_show and response.arrival_after_s is not None:
        state.callout_index.setdefault(vid, {})["arrive_after"] = response.arrival_after_s


async def _follow_phones(state: DrillState, scenario: Scenario, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
    after = 0
    while not stop.is_set():
        try:
            r = await http.get(f"{SIMULATOR}/sim/messages", params={"after": after, "limit": 2000, "wait": 1})
            r.raise_for_status()
            items = r.json()["messages"]
        except httpx.HTTPError as exc:
            state.errors.append(f"simulator feed: {exc!r}")
            await asyncio.sleep(0.5)
            continue
        for msg in items:
            after = max(after, int(msg["seq"]))
            _on_message(state, scenario, http, msg)
        if items:
            state.last_message = time.monotonic()


async def _phones_quiet(state: DrillState, *, since: float, quiet: float = 3.0, limit: float = 30.0) -> None:
    """Wait until no phone has received a message for ``quiet`` seconds (``since`` at the earliest), or ``limit``.

    ``since`` is a ``time.monotonic()`` value; ``quiet`` and ``limit`` are seconds, ``limit`` counted from ``since``.

    The stand-downs of a close keep arriving while notify works through them; a fixed pause after the close
    cut the report's phone count short of what the simulator then delivered when the machine was slow.
    """
    while time.monotonic() < since + limit:
        idle_from = max(since, state.last_message)
        if time.monotonic() - idle_from >= quiet:
            return
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------- boards


async def _register_aeds(scenario: Scenario, http: httpx.AsyncClient, headers: dict[str, str],
                         timeout: float = 60.0) -> None:
    """Register the scenario's AEDs in the roster (an existing serial is kept) and wait for dispatch to know them.

    Dispatch's projection is read through ``GET /aeds`` (within 5 m of each device's WGS84 point).
    """
    from shared.divisions import gcj02_to_wgs84

    for a in scenario.aeds:
        r = await http.post(f"{ROSTER}/aeds", json=a.model_dump(mode="json"), headers=_roster_headers())
        if r.status_code not in (201, 409):
            raise RuntimeError(f"registering AED {a.serial} failed: {r.status_code} {r.text}")
    deadline = time.monotonic() + timeout
    for a in scenario.aeds:
        lat, lon = gcj02_to_wgs84(a.lat, a.lon) if a.datum == "GCJ-02" else (a.lat, a.lon)
        while True:
            r = await http.get(f"{DISPATCH}/aeds", params={"lat": lat, "lon": lon, "within_m": 5}, headers=headers)
            if r.status_code == 200 and r.json():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dispatch has not projected AED {a.serial} after {timeout} s")
            await asyncio.sleep(0.5)
    if scenario.aeds:
        _log(f"{len(scenario.aeds)} AEDs registered and projected")


async def _open(plan: IncidentPlan, http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = {
        "kind": plan.kind,
        "title": plan.title,
        "lat": plan.lat,
        "lon": plan.lon,
        "unit_code": plan.unit_code,
        "mode": "drill",
        "start_level": plan.start_level.value,
        "requirements": [r.model_dump(exclude_none=True, mode="json") for r in plan.requirements],
        "policy": plan.policy.model_dump(mode="json", exclude_none=True),
    }
    r = await http.post(f"{DISPATCH}/incidents", json=body, headers=headers)
    if r.status_code >= 400:
        raise RuntimeError(f"opening {plan.title} failed: {r.status_code} {r.text}")
    return str(r.json()["incident"]["incident_id"])


async def _refresh_callouts(state: DrillState, http: httpx.AsyncClient, headers: dict[str, str],
                            boards: dict[str, dict[str, Any]]) -> None:
    """Index each volunteer's latest open call-out (level, skill) from the boards just fetched."""
    for incident_id, board in boards.items():
        r = await http.get(f"{DISPATCH}/incidents/{incident_id}/callouts", headers=headers)
        if r.status_code != 200:
            continue
        skills = {q["requirement_id"]: q.get("skill") for q in board["requirements"]}
        for c in r.json():
            vid = str(c["volunteer_id"])
            entry = state.callout_index.setdefault(vid, {})
            if c["state"] in ("requested", "timed_out") or "level" not in entry:
                entry.update({"level": c.get("level", "village"), "skill": skills.get(c["requirement_id"]),
                              "callout_id": c["callout_id"], "incident_id": incident_id,
                              "distance_m": c.get("distance_m")})


def _settled(board: dict[str, Any]) -> bool:
    reqs = board["requirements"]
    return all(r["filled"] >= r["count"] or r.get("status") in ("filled", "unfilled") for r in reqs)


async def _follow_boards(state: DrillState, scenario: Scenario, http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + scenario.timeout_seconds
    boards: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        await _refresh_index(state, http, boards)
        if boards and len(boards) == len(state.incidents) and all(_settled(b) for b in boards.values()):
            _log("every requirement is filled or flagged unfilled")
            return boards
        await asyncio.sleep(1.0)
    _log(f"timeout after {scenario.timeout_seconds}s")
    return boards


# ---------------------------------------------------------------------------------------- the drill


async def run_drill(scenario: Scenario, *, report_path: Path | None = None, start: bool = True) -> bool:
    """Run ``scenario`` end to end; write and print the report.

    Returns:
        True when every integrity count is 0 and the scenario's expectations hold.

    """
    from deploy.stack import stack_env
    from muster.drill.report import build_report, write_report

    if start:
        await asyncio.to_thread(_ensure_stack)
    bootstrap = stack_env()["KAFKA_BOOTSTRAP_SERVERS"]
    state = DrillState()
    async with httpx.AsyncClient(timeout=30.0) as http:
        await _seed_roster(scenario, http)
        token = await _operator_token()
        try:
            final, boards, sim_log = await _run(scenario, state, http, bootstrap, token)
        finally:
            await _revoke_token(token)
    titles = [p.title for p in scenario.incidents]
    counts = _integrity(state, final, [m for m in sim_log if is_drill_message(m.get("text", ""), titles)])
    result = build_report(scenario, state, final, counts, boards_seen=boards)
    paths = write_report(result, report_path)
    from muster.drill.report import print_summary

    print_summary(result, paths)
    return bool(result["ok"])


async def _run(
    scenario: Scenario, state: DrillState, http: httpx.AsyncClient, bootstrap: str, token: str
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The drill itself, with the operator ``token``: (final boards, boards last seen, the simulator's log)."""
    headers = {"Authorization": f"Bearer {token}"}
    state.headers = headers
    await _load_directory(state, http)
    await _wait_projections(bootstrap)
    (await http.post(f"{SIMULATOR}/sim/reset")).raise_for_status()
    stop = asyncio.Event()
    state.started = time.monotonic()
    state.started_at = datetime.now(UTC)
    await _register_aeds(scenario, http, headers)
    follower = asyncio.create_task(_follow_phones(state, scenario, http, stop))
    plans = sorted(scenario.incidents, key=lambda p: p.open_after_seconds)
    for plan in plans:
        await asyncio.sleep(max(0.0, plan.open_after_seconds - state.offset()))
        incident_id = await _open(plan, http, headers)
        state.incidents[incident_id] = plan
        _log(f"opened {plan.title} ({incident_id})")
    boards = await _follow_boards(state, scenario, http)
    # Let the replies and check-ins already drawn land (bounded), then close.
    grace = time.monotonic() + 30
    while state.pending and time.monotonic() < grace:
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0)  # the last replies travel simulator → notify → Kafka → dispatch
    for incident_id in state.incidents:
        await http.post(f"{DISPATCH}/incidents/{incident_id}/close", json={"outcome": "drill complete"},
                        headers=headers)
    closed = time.monotonic()
    await _wait_replies_recorded(state, http, headers)
    await _phones_quiet(state, since=closed)  # stand-downs reach the phones
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    for task in list(state.pending):
        task.cancel()

    final: dict[str, dict[str, Any]] = {}
    for incident_id in state.incidents:
        board = (await http.get(f"{DISPATCH}/incidents/{incident_id}", headers=headers)).json()
        callouts = (await http.get(f"{DISPATCH}/incidents/{incident_id}/callouts", headers=headers)).json()
        report = (await http.get(f"{DISPATCH}/incidents/{incident_id}/report", headers=headers)).json()
        final[incident_id] = {"board": board, "callouts": callouts, "report": report,
                              "plan": state.incidents[incident_id].model_dump(mode="json")}
    sim_log = await _all_sim_messages(http)
    return final, boards, sim_log


async def _wait_replies_recorded(state: DrillState, http: httpx.AsyncClient, headers: dict[str, str],
                                 timeout: float = 30.0) -> None:
    """Give replies still in flight (phone → provider → notify → Kafka → dispatch) a bounded time to land.

    A reply that has not reached a board after ``timeout`` seconds counts as lost in the report.
    """
    deadline = time.monotonic() + timeout
    recorded = 0
    while time.monotonic() < deadline:
        recorded = 0
        for incident_id in state.incidents:
            r = await http.get(f"{DISPATCH}/incidents/{incident_id}/callouts", headers=headers)
            if r.status_code == 200:
                recorded += sum(len(c.get("replies", [])) for c in r.json())
        if recorded >= len(state.sent):
            return
        await asyncio.sleep(1.0)
    _log(f"{len(state.sent) - recorded} replies not on the boards after {timeout}s")


async def _all_sim_messages(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        r = await http.get(f"{SIMULATOR}/sim/messages", params={"after": after, "limit": 5000, "wait": 0})
        r.raise_for_status()
        items = r.json()["messages"]
        if not items:
            return out
        out += items
        after = max(int(m["seq"]) for m in items)


def _integrity(state: DrillState, final: dict[str, dict[str, Any]], sim_log: list[dict[str, Any]]) -> dict[str, Any]:
    messages = [
        PhoneMessage(state.phone_to_volunteer.get(m["recipient"]), classify(m.get("text", "")), m.get("out_id"),
                     m.get("text", ""))
        for m in sim_log
    ]
    sent = [SentReply(s["volunteer_id"], s["text"]) for s in state.sent]
    callouts = [BoardCallOut.from_board(c) for inc in final.values() for c in inc["callouts"]]
    requirements = [r for inc in final.values() for r in inc["board"]["requirements"]]
    return integrity(messages, sent, callouts, requirements)
