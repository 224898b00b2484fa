// 指挥台 (operator console): vanilla JS over dispatch's own API; the token stays in sessionStorage.
"use strict";
(function () {
  const V = window.VOCAB;
  const $ = (s, el) => (el || document).querySelector(s);
  const TOKEN = "muster.operator.token";
  const token = () => sessionStorage.getItem(TOKEN);
  const page = document.body.dataset.page;
  const incidentId = document.body.dataset.incident;
  const name = (list, code) => (list.find((x) => x.code === code) || { name: code || "" }).name;
  const SKILL = (c) => name(V.skills, c), TEAM = (c) => name(V.team_types, c), LEVEL = (c) => name(V.levels, c);
  const MODE = (c) => name(V.modes, c), KIND = (c) => name(V.kinds, c);
  const STATE = { requested: "已呼叫", delivered: "已送达", accepted: "已接受", assigned: "已接受", arrived: "已到达",
    declined: "已拒绝", timed_out: "超时未复", cancelled: "已撤回", stood_down: "已撤回", withdrawn: "已撤回" };
  const MSG = { sent: "已发送", delivered: "已送达", failed: "失败" };
  const CANCEL = { filled: "已满员", removed: "操作员撤回", stood_down: "全部撤回", incident_closed: "事件结束",
    engaged_elsewhere: "已在其他任务中" };
  const CHANNEL = { sms: "短信", wechat: "微信", voice: "语音" };
  const MSG_KIND = { callout: "呼叫", assigned: "确认", stand_down: "撤回", reminder: "提醒" };
  // pydantic's 422 messages in Chinese, by error type (the field comes from loc)
  const PYDANTIC = { string_too_long: (c) => `最多 ${c.max_length} 个字符`, string_too_short: () => "不能为空",
    missing: () => "必填", float_parsing: () => "须为数字", int_parsing: () => "须为整数", float_type: () => "须为数字",
    int_type: () => "须为整数", enum: () => "取值无效", too_long: (c) => `最多 ${c.max_length} 项`, uuid_parsing: () => "编号无效" };
  const pmsg = (d) => (PYDANTIC[d.type] ? PYDANTIC[d.type](d.ctx || {}) + `（${d.msg}）` : d.msg);
  const TL = { opened: "发起事件", wave_called: "呼叫一轮", escalated: "升级", unfilled: "未满员", deadline: "时限到",
    filled: "需求满员", reopened: "需求重开", added_by_hand: "手动加人", removed_by_hand: "手动撤回",
    stood_down: "全部撤回", closed: "结束事件", assigned: "接受", withdrawn: "撤销接受", arrived: "到达",
    broadcast: "群发通知", meeting_point_changed: "集合点变更", moved_in: "调入本事件", moved_out: "调往他处",
    ring_called: "急救圈呼叫", cardiac_role: "急救任务", circle_held: "急救圈暂停", scene_unsafe: "现场不安全",
    scene_safe: "现场已安全" };
  const TZ = { timeZone: "Asia/Shanghai", hour12: false };
  const fmtTime = (iso) => iso ? new Date(iso).toLocaleTimeString("zh-CN", TZ) : "";
  const fmtDate = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", TZ) : "";
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const age = (iso) => { const s = Math.max(0, (Date.now() - new Date(iso)) / 1000);
    return s < 3600 ? Math.floor(s / 60) + " 分钟" : s < 86400 ? Math.floor(s / 3600) + " 小时 " + Math.floor(s % 3600 / 60) + " 分" : Math.floor(s / 86400) + " 天"; };
  const role = (r) => r.skill ? SKILL(r.skill) : TEAM(r.team_type);

  function flash(msg, kind) {
    const f = $("#flash"); f.textContent = msg; f.className = "flash " + (kind || "error"); f.hidden = !msg;
    if (msg && kind === "ok") setTimeout(() => { if (f.textContent === msg) f.hidden = true; }, 4000);
  }

  class ApiError extends Error { constructor(status, body) { super(detailText(body) || ("HTTP " + status)); this.status = status; this.body = body; } }
  function detailText(body) {
    if (!body) return "";
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => (d.loc || []).slice(1).join(".") + ": " + d.msg).join("；");
    if (body.error === "unavailable") return "服务暂时不可用，请稍后重试";
    return JSON.stringify(body);
  }
  async function api(method, path, body) {
    const r = await fetch(path, { method, headers: { Authorization: "Bearer " + token(), "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text(); let data = null; try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (r.status === 401 && page !== "index") { sessionStorage.removeItem(TOKEN); location.href = "/console/"; }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }

  // ---- confirm dialog: resolves to the extra form's values, or null when cancelled
  function confirmDialog(text, extraHtml) {
    const d = $("#confirm"); $("#confirm-text").textContent = text; $("#confirm-extra").innerHTML = extraHtml || "";
    return new Promise((resolve) => {
      d.onclose = () => {
        if (d.returnValue !== "ok") return resolve(null);
        const vals = {}; d.querySelectorAll("#confirm-extra [name]").forEach((el) => { vals[el.name] = el.value; });
        resolve(vals);
      };
      d.returnValue = ""; d.showModal();
      const first = d.querySelector("#confirm-extra input, #confirm-extra textarea"); if (first) first.focus();
    });
  }

  // ---- sound: a WebAudio beep, only after the operator turned it on (browsers need a click first)
  let audio = null;
  function toggleSound() {
    if (audio) { audio.close(); audio = null; } else { audio = new (window.AudioContext || window.webkitAudioContext)(); beep(); }
    $("#sound").textContent = audio ? "提示音：开" : "提示音：关";
  }
  function beep(freq) {
    if (!audio) return;
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = freq || 880; g.gain.setValueAtTime(0.2, audio.currentTime);
    g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
    o.connect(g).connect(audio.destination); o.start(); o.stop(audio.currentTime + 0.4);
  }

  // ---- session
  let me = null;
  async function signedIn() {
    if (!token()) return null;
    try { me = await api("GET", "/console/api/me"); } catch (e) { sessionStorage.removeItem(TOKEN); return null; }
    const ROLE = { city: "市级", county: "区县级", town: "乡镇级", village: "村级", viewer: "只读" };
    $("#who").textContent = me.name + " · " + (ROLE[me.role] || me.role) + " · " + me.unit_name;
    $("#signout").hidden = false;
    if (!me.writes) document.querySelectorAll("[data-needs-write]").forEach((el) => { el.hidden = true; });
    return me;
  }
  $("#signout").onclick = () => { sessionStorage.removeItem(TOKEN); location.href = "/console/"; };
  $("#sound").onclick = toggleSound;

  // ---- incident list
  async function indexPage() {
    if (!(await signedIn())) {
      $("#signin").hidden = false;
      $("#signin-form").onsubmit = async (ev) => {
        ev.preventDefault(); sessionStorage.setItem(TOKEN, $("#token").value.trim());
        try { me = await api("GET", "/console/api/me"); location.reload(); }
        catch (e) { sessionStorage.removeItem(TOKEN); $("#signin-error").textContent = "登录失败：" + e.message; }
      };
      $("#token").focus();
      return;
    }
    $("#incidents").hidden = false;
    const all = await api("GET", "/incidents?limit=1000");
    const LV = V.levels.map((l) => l.code);
    const reached = (i) => (i.levels || []).reduce((a, b) => (LV.indexOf(b) > LV.indexOf(a) ? b : a), "village");
    const row = (i, closed) => `<tr class="${i.mode === "drill" ? "is-drill" : ""}">
      <td><span class="mode ${esc(i.mode)}">${esc(MODE(i.mode))}</span></td>
      <td><a href="/console/incidents/${esc(i.incident_id)}">${esc(i.title)}</a> <small>${esc(KIND(i.kind))}</small></td>
      <td>${esc(i.place || i.unit_code)}</td>
      ${closed ? "" : `<td>${esc(LEVEL(reached(i)))}</td>`}
      <td><meter min="0" max="${i.needed}" value="${i.filled}"></meter> ${i.filled}/${i.needed}</td>
      <td>${closed ? fmtDate(i.opened_at) : age(i.opened_at)}</td>${closed ? `<td>${fmtDate(i.closed_at)}</td>` : ""}</tr>`;
    const open = all.filter((i) => i.status === "open"), closed = all.filter((i) => i.status !== "open");
    $("#open-rows").innerHTML = open.map((i) => row(i, false)).join("") || `<tr><td colspan="6">没有进行中的事件</td></tr>`;
    const drawClosed = () => {
      const q = $("#closed-search").value.trim();
      $("#closed-rows").innerHTML = closed.filter((i) => !q || [i.title, i.place, i.unit_code, KIND(i.kind), i.kind].join(" ").includes(q))
        .slice(0, 200).map((i) => row(i, true)).join("") || `<tr><td colspan="6">无</td></tr>`;
    };
    $("#closed-search").oninput = drawClosed; drawClosed();
  }

  // ---- open an incident
  async function newPage() {
    if (!(await signedIn())) { location.href = "/console/"; return; }
    const divs = await (await fetch("/console/divisions.json")).json();
    const kids = (p) => divs.filter((d) => d.parent === p);
    const byCode = Object.fromEntries(divs.map((d) => [d.code, d]));
    const inScope = (code) => me.unit_code === "330600" || code.startsWith(me.unit_code) || me.unit_code.startsWith(code);
    const fill = (sel, list) => { sel.innerHTML = list.map((d) => `<option value="${d.code}">${esc(d.name)}</option>`).join(""); };
    const county = $("#county"), town = $("#town"), village = $("#village"), form = $("#new-form");
    fill(county, kids("330600").filter((d) => inScope(d.code)));
    county.onchange = () => { fill(town, kids(county.value).filter((d) => inScope(d.code))); town.onchange(); };
    town.onchange = () => {
      fill(village, kids(town.value).filter((d) => inScope(d.code)));
      const t = byCode[town.value];
      if (t && t.lat != null) { form.lat.value = t.lat.toFixed(5); form.lon.value = t.lon.toFixed(5); }
    };
    county.onchange();
    const reqs = $("#reqs");
    const addReq = () => {
      const div = document.createElement("div"); div.className = "req-row";
      div.innerHTML = `<select name="req-what"><optgroup label="技能">${V.skills.map((s) => `<option value="skill:${s.code}">${esc(s.name)}</option>`).join("")}</optgroup>
        <optgroup label="队伍">${V.team_types.map((t) => `<option value="team:${t.code}">${esc(t.name)}</option>`).join("")}</optgroup></select>
        × <input name="req-count" inputmode="numeric" value="1" size="4"> 人/队 <button type="button" class="small" data-remove>删除</button>
        <span class="field-error" data-for="requirements.${reqs.children.length}"></span>`;
      div.querySelector("[data-remove]").onclick = () => div.remove();
      reqs.appendChild(div);
    };
    $("#add-req").onclick = addReq; addReq();
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; }); $("#form-error").textContent = "";
      const num = (v) => (v.trim() === "" ? null : Number(v));
      const body = { kind: form.kind.value, title: form.title.value.trim(), mode: form.mode.value,
        unit_code: village.value, lat: num(form.lat.value), lon: num(form.lon.value), start_level: form.start_level.value,
        requirements: [...reqs.children].map((d) => { const [t, c] = d.querySelector("[name=req-what]").value.split(":");
          return { [t === "skill" ? "skill" : "team_type"]: c, count: num(d.querySelector("[name=req-count]").value) }; }),
        policy: {} };
      if (form.meeting_point.value.trim()) body.meeting_point = form.meeting_point.value.trim();
      if (form.callback_phone.value.trim()) body.callback_phone = form.callback_phone.value.trim();
      if (form.max_level.value) body.policy.max_level = form.max_level.value;
      if (form.wave_deadline_seconds.value.trim()) body.policy.wave_deadline_seconds = num(form.wave_deadline_seconds.value);
      try {
        const b = await api("POST", "/incidents", body);
        location.href = "/console/incidents/" + b.incident.incident_id;
      } catch (e) { showFieldErrors(form, e); }
    };
  }
  // the API's 422s beside the fields: pydantic's loc, or the domain's message matched to a field by its words
  const WORDS = [["title", "title"], ["kind", "kind"], ["wave_deadline", "policy.wave_deadline_seconds"],
    ["deadline", "policy.wave_deadline_seconds"], ["max_level", "policy.max_level"], ["start_level", "start_level"],
    ["count", "requirements"], ["skill", "requirements"], ["requirement", "requirements"], ["lat", "lat"], ["lon", "lon"],
    ["meeting", "meeting_point"], ["callback", "callback_phone"], ["phone", "callback_phone"], ["point", "lat"], ["unit", "unit_code"], ["village", "unit_code"], ["mode", "mode"]];
  function showFieldErrors(form, e) {
    const put = (field, msg) => {
      const el = form.querySelector(`[data-for="${field}"]`) || form.querySelector(`[data-for="${field.split(".")[0]}"]`);
      (el || $("#form-error")).textContent += (el && el.textContent ? "；" : "") + msg;
    };
    if (e.body && Array.isArray(e.body.detail)) {
      e.body.detail.forEach((d) => { const loc = (d.loc || []).slice(1); put(loc.join("."), pmsg(d)); });
    } else if (e.status === 422 && e.body && typeof e.body.detail === "string") {
      const hit = WORDS.find(([w]) => e.body.detail.toLowerCase().includes(w)); put(hit ? hit[1] : "", e.body.detail);
    } else { $("#form-error").textContent = (e.status === 403 ? "无权操作：" : "失败：") + e.message; }
  }

  // ---- the board
  let snap = null, lastAccepted = null, lastUnfilled = 0;
  function drawBoard(s) {
    snap = s; const b = s.board, inc = b.incident;
    nameOf = Object.fromEntries(s.responders.map((r) => [r.volunteer_id, r.name]));
    const drill = inc.mode === "drill"; $("#drill-banner").hidden = !drill; document.body.classList.toggle("drill", drill);
    $("#b-title").textContent = inc.title;
    $("#b-meta").innerHTML = `<span class="mode ${esc(inc.mode)}">${esc(MODE(inc.mode))}</span> ${esc(KIND(inc.kind))} · ${esc(inc.place || inc.unit_code)} · 发起 ${fmtDate(inc.opened_at)}
      · <b>当前层级：${esc(LEVEL(b.current_level))}</b> · <span class="status ${esc(inc.status)}">${inc.status === "open" ? "进行中" : "已结束"}</span>
      ${inc.meeting_point ? " · 集合点：" + esc(inc.meeting_point) : ""}${inc.callback_phone ? " · 回拨 " + esc(inc.callback_phone) : ""}
      ${inc.outcome ? " · 结果：" + esc(inc.outcome) : ""} · 下一时限 <span class="countdown" data-at="${esc(b.next_deadline || "")}"></span>`;
    const byReq = {}; s.responders.forEach((r) => { (byReq[r.requirement_id] = byReq[r.requirement_id] || []).push(r); });
    $("#reqs").innerHTML = b.requirements.map((q) => {
      const rs = byReq[q.requirement_id] || [];
      const arrived = rs.filter((r) => r.state === "arrived").length, assigned = q.filled;
      const pct = (n) => Math.min(100, (100 * n) / Math.max(1, q.count));
      const lv = V.levels.map((l) => `<span class="lv ${l.code === q.level ? "on" : ""}">${esc(l.name)}</span>`).join("");
      return `<div class="req" data-requirement="${q.requirement_id}"><div class="req-head"><b>${esc(role(q))}</b> 需要 ${q.count}，已接受 <b class="filled">${assigned}</b>，已到达 ${arrived}
        <span class="req-status">${q.status === "filled" ? "✔ 已满员" : q.status === "unfilled" ? "✖ 未满员" : "第 " + q.wave + " 轮"}</span></div>
        <div class="bar"><span class="assigned" style="width:${pct(assigned)}%"></span><span class="arrived" style="width:${pct(arrived)}%"></span></div>
        <div class="levels">${lv} <span class="countdown" data-at="${esc(q.deadline_at || "")}"></span></div></div>`;
    }).join("");
    const open = (r) => ["requested", "accepted", "assigned", "delivered"].includes(r.state);
    $("#resp-count").textContent = `共 ${s.responders.length} 人次，已接受 ${s.responders.filter((r) => r.state === "accepted" || r.state === "assigned").length}`;
    const writes = me && me.writes && inc.status === "open";
    drawRows(s.responders, (r) => `<tr data-callout="${r.callout_id}" data-state="${esc(r.state)}" class="st-${esc(r.state)}">
      <td>${esc(r.name || "（未知）")}${r.manual ? ' <small class="tag">手动</small>' : ""}</td><td>${esc(r.unit_name)}</td>
      <td>${r.distance_m == null ? "" : (r.distance_m / 1000).toFixed(1) + " 公里"}</td>
      <td class="state">${esc(STATE[r.state] || r.state)}${r.eta_minutes != null && r.state !== "arrived" ? "，约 " + r.eta_minutes + " 分钟到" : ""}${r.cancel_reason ? " <small>（" + esc(CANCEL[r.cancel_reason] || r.cancel_reason) + "）</small>" : ""}</td>
      <td>${esc(LEVEL(r.level))} / ${r.wave}</td>
      <td>${r.messages.map((m) => `<span class="msg ${esc(m.status)}">${esc(MSG_KIND[m.kind] || m.kind)}·${esc(CHANNEL[m.channel] || m.channel)}${esc(MSG[m.status] || m.status)}</span>`).join(" ")}</td>
      <td>${writes && (open(r) || r.state === "arrived") ? `<button type="button" class="small" data-remove="${r.callout_id}">撤回</button>` : ""}</td></tr>`);
    drawCircle(b, s.responders);
    $("#timeline").innerHTML = b.timeline.slice().reverse().map((t) => `<li><time>${fmtTime(t.at)}</time> ${esc(TL[t.kind] || t.kind)}
      <small>${esc(tlDetail(t.detail))}</small></li>`).join("");
    document.querySelectorAll(".actions [data-needs-write] button, .actions button").forEach((btn) => {
      if (btn.id !== "act-report") btn.disabled = !writes; });
    const accepted = s.responders.filter((r) => r.state === "accepted" || r.state === "assigned").length;
    const unfilled = b.requirements.filter((q) => q.status === "unfilled").length;
    if (lastAccepted !== null && accepted > lastAccepted) beep(880); // a new acceptance: high
    if (lastAccepted !== null && unfilled > lastUnfilled) beep(330); // a requirement just went unfilled: low
    lastAccepted = accepted; lastUnfilled = unfilled;
    drawMapSoon(); tick();
  }
  let nameOf = {};
  // a cardiac arrest's rescue circle (issue #17): the rings, and who does CPR or fetches which AED
  function drawCircle(b, responders) {
    const inc = b.incident, pol = inc.circle_policy, box = $("#circle");
    if (!box) return;
    box.hidden = inc.kind !== "cardiac_arrest" || !pol;
    if (box.hidden) return;
    const rings = b.timeline.filter((t) => t.kind === "ring_called").length || (responders.length ? 1 : 0);
    $("#circle-note").textContent = (inc.scene_unsafe ? "现场不安全：暂停呼叫 · " : "") +
      `圈层 ${(pol.rings_m || []).map((m, i) => (i < rings ? "●" : "○") + Math.round(m) + " 米").join(" → ")}` +
      ` · 先呼叫最近 ${pol.first} 人，至多 ${pol.cap} 人，需 ${pol.wanted} 人`;
    const byCallout = Object.fromEntries(responders.map((r) => [r.callout_id, r]));
    const rows = (b.roles || []).map((x) => {
      const r = byCallout[x.callout_id] || {};
      const task = x.role === "cpr" ? "心肺复苏（CPR）" : "取 AED 后送到现场";
      const state = x.released_at ? "已结束" : x.arrived_at ? "已到达" : "在途";
      return `<tr data-role="${esc(x.role)}"><td>${esc(r.name || nameOf[x.volunteer_id] || "")}</td><td>${task}</td>
        <td>${esc(x.aed_place || "—")}</td><td>${x.path_m != null ? Math.round(x.path_m) + " 米" : "—"}</td><td>${state}</td></tr>`;
    });
    $("#roles tbody").innerHTML = rows.join("") || `<tr><td colspan="5">尚无人接受</td></tr>`;
  }
  // The responders table: only the rows whose HTML changed are replaced (a reply changes one row of a
  // board that may have 1,700; rebuilding the whole table on every frame kept the browser busy under a
  // burst of replies). A different set or order of rows (a new wave, a full frame) rebuilds it.
  let rowHtml = new Map();
  function drawRows(rows, html) {
    const tbody = $("#responders tbody"), next = new Map(rows.map((r) => [r.callout_id, html(r)]));
    const ids = [...next.keys()], trs = tbody.rows;
    const same = trs.length === ids.length && ids.every((id, i) => trs[i].dataset.callout === id);
    if (!same) tbody.innerHTML = [...next.values()].join("");
    else ids.forEach((id, i) => {
      const h = next.get(id); if (rowHtml.get(id) === h) return;
      const t = document.createElement("tbody"); t.innerHTML = h; tbody.replaceChild(t.firstElementChild, trs[i]);
    });
    rowHtml = next;
  }
  function tlDetail(d) {
    if (!d) return "";
    const parts = [];
    if (d.volunteer_id && nameOf[d.volunteer_id]) parts.push(nameOf[d.volunteer_id]);
    if (d.level) parts.push(LEVEL(d.level)); if (d.wave) parts.push("第 " + d.wave + " 轮");
    if (d.called != null) parts.push("呼叫 " + d.called + " 人"); if (d.filled != null) parts.push("到位 " + d.filled);
    if (d.by) parts.push("操作员 " + d.by); if (d.outcome) parts.push(d.outcome); if (d.callouts != null) parts.push(d.callouts + " 人");
    if (d.mode) parts.push(MODE(d.mode));
    return parts.join("，");
  }
  function tick() {
    document.querySelectorAll(".countdown").forEach((el) => {
      const at = el.dataset.at; if (!at) { el.textContent = ""; return; }
      const s = Math.round((new Date(at) - Date.now()) / 1000);
      el.textContent = s >= 0 ? `剩 ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` : "时限已到";
      el.classList.toggle("late", s < 30);
    });
  }
  // the map at most once a second (a burst of frames redraws it once more at the end, from the latest board)
  let mapAt = 0, mapTimer = null;
  function drawMapSoon() {
    const wait = mapAt + 1000 - Date.now();
    if (wait <= 0) { mapAt = Date.now(); drawMap(snap); }
    else if (!mapTimer) mapTimer = setTimeout(() => { mapTimer = null; mapAt = Date.now(); drawMap(snap); }, wait);
  }
  function drawMap(s) {
    const svg = $("#map"); if (!svg) return;
    const box = JSON.parse(svg.dataset.box), w = +svg.dataset.w, h = +svg.dataset.h;
    const xy = (lat, lon) => [((lon - box.west) / (box.east - box.west)) * w, ((box.north - lat) / (box.north - box.south)) * h];
    const inc = s.board.incident, pts = [xy(inc.lat, inc.lon)];
    const resp = s.responders.filter((r) => r.lat != null && r.lon != null && r.state !== "cancelled");
    resp.forEach((r) => pts.push(xy(r.lat, r.lon)));
    if (inc.meeting_lat != null) pts.push(xy(inc.meeting_lat, inc.meeting_lon));
    // the view: the whole city ("全市"), or fitted to the incident and its responders (at least ~6 km across)
    const whole = svg.dataset.view === "city";
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const side = Math.max(40, (x1 - x0) * 1.3, (y1 - y0) * 1.3), cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const vb = whole ? [0, 0, w, h] : [cx - side / 2, cy - side / 2, side, side];
    svg.setAttribute("viewBox", vb.join(" "));
    const k = vb[2] / w; // marks keep their size on screen
    svg.querySelectorAll(".dot").forEach((c) => { c.setAttribute("r", (c.classList.contains("county") ? 5 : 3) * k); });
    svg.querySelectorAll(".dot-label").forEach((t) => { t.style.fontSize = 12 * k + "px"; t.setAttribute("dx", 7 * k); t.setAttribute("dy", 4 * k); });
    svg.classList.toggle("zoomed", !whole);
    let out = "";
    resp.forEach((r) => { const [x, y] = xy(r.lat, r.lon);
      out += `<circle class="resp st-${esc(r.state)}" cx="${x}" cy="${y}" r="${4 * k}"><title>${esc(r.name)} ${esc(STATE[r.state] || r.state)}</title></circle>`; });
    if (inc.meeting_lat != null) { const [x, y] = xy(inc.meeting_lat, inc.meeting_lon); out += `<rect class="meet" x="${x - 5 * k}" y="${y - 5 * k}" width="${10 * k}" height="${10 * k}"><title>集合点</title></rect>`; }
    const [x, y] = pts[0];
    out += `<path class="inc" style="stroke-width:${1.5 * k}" d="M${x} ${y - 10 * k} L${x + 9 * k} ${y + 6 * k} L${x - 9 * k} ${y + 6 * k} Z"><title>${esc(inc.title)}</title></path>`;
    $("#map-marks").innerHTML = out;
    $("#map-note").textContent = whole ? "全市" : `局部（约 ${(side / w * (box.east - box.west) * 96.5).toFixed(1)} 公里见方）`;
  }
  const mapToggle = $("#map-toggle");
  if (mapToggle) mapToggle.onclick = () => { const svg = $("#map"); svg.dataset.view = svg.dataset.view === "city" ? "" : "city"; if (snap) drawMap(snap); };

  // live: fetch-read SSE stream (token in the header), reconnect with Last-Event-ID, fall back to polling
  let lastId = null, failures = 0, pollTimer = null;
  function conn(state, text) { const c = $("#conn"); c.className = "conn-state " + state; c.textContent = text; }
  async function stream() {
    const headers = { Authorization: "Bearer " + token(), Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    try {
      const r = await fetch(`/incidents/${incidentId}/stream`, { headers, cache: "no-store" });
      if (!r.ok || !r.body) throw new ApiError(r.status, await r.json().catch(() => null));
      const reader = r.body.getReader(), dec = new TextDecoder(); let buf = "";
      for (;;) {
        const { value, done } = await reader.read(); if (done) break;
        buf += dec.decode(value, { stream: true });
        let i; while ((i = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, i); buf = buf.slice(i + 2); let data = "", id = null, event = "";
          frame.split("\n").forEach((line) => { if (line.startsWith("data: ")) data += line.slice(6); else if (line.startsWith("id: ")) id = line.slice(4); else if (line.startsWith("event: ")) event = line.slice(7); });
          if (event === "revoked") throw new ApiError(401, { detail: "令牌已被撤销，请重新登录" });
          if (id) lastId = id;
          // only a board counts as connected: a stream that opens and ends without one (a proxy cutting it)
          // is a failure, so three of them fall back to polling instead of reconnecting for ever
          if (data) { later(data); failures = 0; conn("on", "● 实时推送"); stopPolling(); }
        }
      }
      throw new Error("stream ended");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) { sessionStorage.removeItem(TOKEN); flash(e.message); conn("off", "令牌无效"); setTimeout(() => { location.href = "/console/"; }, 1500); return; }
      if (e instanceof ApiError && (e.status === 403 || e.status === 404)) { flash(e.message); conn("off", "无法查看"); return; }
      failures += 1; window.__streamFailures = failures;
      if (failures >= 3) startPolling(); else conn("retry", "重新连接中…");
      setTimeout(stream, Math.min(15000, 1000 * 2 ** failures));
    }
  }
  // frames: a whole board (full) or the board with the changed responder rows; drawn once per animation frame
  let pending = null;
  function later(data) {
    const f = JSON.parse(data), base = pending || snap;
    pending = f.full || !base ? f : merge(base, f);
    if (!later.scheduled) { later.scheduled = true; requestAnimationFrame(() => { later.scheduled = false; const p = pending; pending = null; drawBoard(p); }); }
  }
  function merge(base, f) {
    const rows = base.responders.slice(), at = new Map(rows.map((r, i) => [r.callout_id, i]));
    f.responders.forEach((r) => { if (at.has(r.callout_id)) rows[at.get(r.callout_id)] = r; else { at.set(r.callout_id, rows.length); rows.push(r); } });
    return { board: f.board, responders: rows };
  }
  function startPolling() {
    conn("poll", "◌ 推送受阻，轮询中");
    if (pollTimer) return;
    const poll = async () => { try { drawBoard(await api("GET", `/console/api/incidents/${incidentId}`)); } catch (e) { conn("off", "连接中断"); } };
    poll(); pollTimer = setInterval(poll, 3000);
  }
  function stopPolling() { if (pollTimer) { clearInterval(pollTimer); pollTimer = null; } }
  window.__consoleForcePolling = startPolling;

  async function act(label, fn) {
    try { await fn(); flash(label + "：已完成", "ok"); }
    catch (e) { flash(label + "失败：" + (e.status === 403 ? "无权操作 — " : "") + e.message); }
  }
  async function addByHand() {
    if (!snap) return;
    const reqOpts = snap.board.requirements.map((q) => `<option value="${q.requirement_id}">${esc(role(q))}（缺 ${q.outstanding}）</option>`).join("");
    const d = $("#confirm");
    const pick = confirmDialog("手动加人：搜索姓名或单位，选中后确定。跳过技能核验（由操作员判断，记入审计）。",
      `<label>需求 <select name="requirement_id">${reqOpts}</select></label>
       <label>搜索 <input id="vol-q" placeholder="姓名 / 村社区 / 街道"></label>
       <select name="volunteer_id" id="vol-pick" size="6" class="pick"></select>`);
    const q = d.querySelector("#vol-q"), sel = d.querySelector("#vol-pick");
    let timer = null;
    q.oninput = () => { clearTimeout(timer); timer = setTimeout(async () => {
      const skill = (snap.board.requirements.find((x) => x.requirement_id === d.querySelector("[name=requirement_id]").value) || {}).skill || "";
      const list = await api("GET", `/console/api/volunteers?q=${encodeURIComponent(q.value)}&skill=${encodeURIComponent(skill)}`);
      // someone on their way elsewhere says so: adding them calls them, their acceptance is answered "engaged
      // elsewhere" (moving them is the explicit way)
      sel.innerHTML = list.map((v) => `<option value="${v.volunteer_id}">${esc(v.name)} · ${esc(v.unit_name)} · ${esc(v.skills.map(SKILL).join("、"))}${v.engaged_in ? " · 已在“" + esc(v.engaged_in) + "”任务中" : ""}</option>`).join("");
      if (list.length) sel.selectedIndex = 0;
    }, 250); };
    const vals = await pick;
    if (!vals || !vals.volunteer_id) return;
    await act("手动加人", () => api("POST", `/incidents/${incidentId}/callouts`, { volunteer_id: vals.volunteer_id, requirement_id: vals.requirement_id }));
  }
  async function removeOne(cid) {
    const r = snap.responders.find((x) => x.callout_id === cid);
    if (!(await confirmDialog(`确定撤回 ${r ? r.name : ""}？将通知其不必前往。`))) return;
    await act("撤回", () => api("DELETE", `/incidents/${incidentId}/callouts/${cid}`));
  }
  async function standDown() {
    if (!(await confirmDialog("确定全部撤回？所有仍在等待或已接受的人员将收到撤回通知，不再呼叫新的一轮。"))) return;
    await act("全部撤回", () => api("POST", `/incidents/${incidentId}/stand-down`));
  }
  async function broadcast() {
    const vals = await confirmDialog("群发通知：经短信/微信发给本事件的响应人员，每人一次，计入审计。",
      `<label>对象 <select name="audience"><option value="assigned">已接受、在途和已到达的人员</option>
         <option value="called">所有仍在呼叫中的人员</option></select></label>
       <label>内容 <textarea name="text" rows="3" cols="40" maxlength="120" placeholder="如：集合点改到南门"></textarea></label>`);
    if (!vals || !vals.text.trim()) return;
    try {
      const b = await api("POST", `/incidents/${incidentId}/broadcasts`, { text: vals.text.trim(), audience: vals.audience });
      flash(`群发通知：已发给 ${b.recipients} 人`, "ok");
    } catch (e) { flash("群发通知失败：" + (e.status === 403 ? "无权操作 — " : "") + e.message); }
  }
  async function closeIncident() {
    const vals = await confirmDialog("结束事件：请填写处置结果。", `<label>结果 <textarea name="outcome" rows="3" cols="40" placeholder="如：已救起，移交 120"></textarea></label>`);
    if (!vals) return;
    await act("结束事件", () => api("POST", `/incidents/${incidentId}/close`, { outcome: vals.outcome.trim() }));
  }
  async function boardPage() {
    if (!(await signedIn())) { location.href = "/console/"; return; }
    $("#act-add").onclick = addByHand; $("#act-standdown").onclick = standDown; $("#act-close").onclick = closeIncident; $("#act-broadcast").onclick = broadcast;
    $("#responders").onclick = (ev) => { const b = ev.target.closest("[data-remove]"); if (b) removeOne(b.dataset.remove); };
    document.addEventListener("keydown", (ev) => {
      if (ev.target.closest("input, textarea, select, dialog") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const k = ev.key.toLowerCase(), ok = (id) => !$(id).disabled && !$(id).closest("[hidden]");
      if (k === "a" && ok("#act-add")) addByHand(); else if (k === "d" && ok("#act-standdown")) standDown();
      else if (k === "c" && ok("#act-close")) closeIncident(); else if (k === "b" && ok("#act-broadcast")) broadcast(); else if (k === "r") $("#act-report").click();
      else if (k === "s") toggleSound(); else if (k === "m") $("#map-toggle").click(); else return;
      ev.preventDefault();
    });
    setInterval(tick, 1000);
    conn("retry", "连接中…"); stream();
  }

  // ---- report (printable)
  async function reportPage() {
    if (!(await signedIn())) { location.href = "/console/"; return; }
    const [rep, s] = await Promise.all([api("GET", `/incidents/${incidentId}/report`), api("GET", `/console/api/incidents/${incidentId}`)]);
    const inc = s.board.incident, f = rep.figures || {};
    nameOf = Object.fromEntries(s.responders.map((r) => [r.volunteer_id, r.name]));
    $("#drill-banner").hidden = inc.mode !== "drill";
    $("#r-title").textContent = (inc.mode === "drill" ? "演练报告：" : "事件报告：") + inc.title;
    $("#r-meta").textContent = `${KIND(inc.kind)} · ${inc.place || inc.unit_code} · 发起 ${fmtDate(rep.opened_at)} · 结束 ${rep.closed_at ? fmtDate(rep.closed_at) : "（进行中）"}${rep.outcome ? " · 结果：" + rep.outcome : ""}`;
    const secs = (v) => (v == null ? "—" : v < 120 ? Math.round(v) + " 秒" : (v / 60).toFixed(1) + " 分钟");
    const pct = (v) => (v == null ? "—" : Math.round(v * 100) + "%");
    const rates = Object.entries(f.acceptance_rate_by_level || {}).map(([lv, x]) => `${LEVEL(lv)} ${x.accepted}/${x.called}（${pct(x.rate)}）`).join("；");
    const rows = [["最高层级", LEVEL(f.level_reached)], ["呼叫轮数", f.waves], ["首个接受用时", secs(f.time_to_first_acceptance_s)],
      ["各级接受率", rates || "—"], ["呼叫人次", s.responders.length],
      ["消息", Object.entries(s.board.messages_by_channel || {}).map(([c, n]) => (CHANNEL[c] || c) + " " + n + " 条").join("，") || "—"],
      ["发送失败", f.delivery_failures]];
    $("#r-figures").innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${esc(v == null ? "—" : v)}</td></tr>`).join("");
    $("#r-reqs tbody").innerHTML = s.board.requirements.map((q) => { const arrived = s.responders.filter((r) => r.requirement_id === q.requirement_id && r.state === "arrived").length;
      return `<tr><td>${esc(role(q))}</td><td>${q.count}</td><td>${q.filled}</td><td>${arrived}</td><td>${esc(LEVEL(q.level))}</td><td>${secs(((f.requirements || []).find((x) => x.requirement_id === q.requirement_id) || {}).time_to_fill_s)}</td><td>${q.status === "filled" ? "已满员" : q.status === "unfilled" || rep.closed_at ? "未满员" : "进行中"}</td></tr>`; }).join("");
    const tl = rep.timeline || [];
    $("#r-timeline tbody").innerHTML = tl.map((t) => `<tr><td>${fmtTime(t.at)}</td><td>${esc(TL[t.kind] || t.kind)}</td><td>${esc(tlDetail(t.detail))}</td></tr>`).join("");
    $("#r-people tbody").innerHTML = s.responders.filter((r) => ["accepted", "assigned", "arrived"].includes(r.state) || r.accepted_at)
      .map((r) => `<tr><td>${esc(r.name)}</td><td>${esc(r.unit_name)}</td><td>${esc(STATE[r.state] || r.state)}</td><td>${fmtTime(r.accepted_at)}</td><td>${fmtTime(r.arrived_at)}</td></tr>`).join("");
    if (tl.length) {
      const t0 = new Date(tl[0].at), t1 = new Date(tl[tl.length - 1].at), span = Math.max(1, t1 - t0);
      const x = (t) => 20 + ((new Date(t) - t0) / span) * 660;
      $("#r-chart").innerHTML = `<line x1="20" y1="60" x2="680" y2="60" class="axis"/>` + tl.map((t, i) =>
        `<circle cx="${x(t.at)}" cy="60" r="4" class="ev ${esc(t.kind)}"><title>${fmtTime(t.at)} ${esc(TL[t.kind] || t.kind)}</title></circle>` +
        (["opened", "escalated", "filled", "closed"].includes(t.kind) ? `<text x="${x(t.at)}" y="${i % 2 ? 90 : 40}" text-anchor="middle">${esc(TL[t.kind])} ${fmtTime(t.at)}</text>` : "")).join("");
    }
    $("#r-printed").textContent = "打印时间（北京时间）：" + fmtDate(new Date().toISOString());
  }

  // ---- the volunteers' record: service hours by unit, star ratings, the XLSX export
  async function servicePage() {
    if (!(await signedIn())) { location.href = "/console/"; return; }
    const q = new URLSearchParams(location.search);
    $("#s-year").value = q.get("year") || new Date().toLocaleString("en-CA", { ...TZ, year: "numeric" });
    $("#s-unit").value = q.get("unit_code") || me.unit_code;
    const params = () => new URLSearchParams({ year: $("#s-year").value, unit_code: $("#s-unit").value }).toString();
    const load = async () => {
      const [h, st] = await Promise.all([api("GET", "/service-hours?" + params()), api("GET", "/service-hours/stars?" + params())]);
      $("#s-meta").textContent = `${h.unit_name} · ${h.year} 年 · 服务 ${h.volunteers} 人、${h.deployments} 人次、${h.hours} 小时；演练 ${h.drill_hours} 小时`;
      $("#s-units tbody").innerHTML = h.units.map((u) => `<tr><td><a href="?${new URLSearchParams({ year: h.year, unit_code: u.unit_code })}">${esc(u.unit_name)}</a></td>
        <td>${u.volunteers}</td><td>${u.deployments}</td><td>${u.hours}</td><td>${u.drill_hours}</td></tr>`).join("") || `<tr><td colspan="5">本年无到达记录</td></tr>`;
      $("#s-stars tbody").innerHTML = st.volunteers.map((v) => `<tr data-volunteer="${esc(v.volunteer_id)}"><td>${esc(v.name)}</td><td>${esc(v.unit_name)}</td>
        <td>${v.year_hours}</td><td class="stars">${v.stars ? "★".repeat(v.stars) : "—"}</td><td>${esc(v.explanation)}</td><td>${esc(v.next_level_needs || "已是最高星级")}</td></tr>`).join("")
        || `<tr><td colspan="6">暂无记录</td></tr>`;
    };
    $("#s-form").onsubmit = (ev) => { ev.preventDefault(); history.replaceState(null, "", "?" + params()); load().catch((e) => flash("出错：" + e.message)); };
    $("#s-export").onclick = async () => {  // fetched with the token (never in a URL), saved as a file
      const r = await fetch("/service-hours/stars.xlsx?" + params(), { headers: { Authorization: "Bearer " + token() } });
      if (!r.ok) { flash("导出失败：HTTP " + r.status); return; }
      const a = document.createElement("a"); a.href = URL.createObjectURL(await r.blob());
      a.download = `星级评定-${$("#s-unit").value}-${$("#s-year").value}.xlsx`; document.body.appendChild(a); a.click(); a.remove();
    };
    await load();
  }

  // N opens the form from any page (outside text fields)
  document.addEventListener("keydown", (ev) => {
    if (ev.key.toLowerCase() !== "n" || ev.target.closest("input, textarea, select, dialog") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (me && me.writes && page !== "new") location.href = "/console/new";
  });

  const pages = { index: indexPage, new: newPage, board: boardPage, report: reportPage, service: servicePage };
  (pages[page] || (() => {}))().catch((e) => flash("出错：" + e.message));
})();
