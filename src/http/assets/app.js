// sockpulse live page: keeps the server-rendered page current from the
// agent's own WebSocket stream (/api/v1/stream, subprotocol sockpulse.v1).
// No framework, no build step; data is only ever set as text, never as HTML.
"use strict";
(() => {
  const SPARK_W = 120, SPARK_H = 26, MAX_EVENTS = 300, MAX_RETRY_MS = 30000;
  const $ = (sel) => document.querySelector(sel);
  const rows = new Map();
  let events = [];
  let retryMs = 1000;
  let lastSeq = 0;

  const key = (r) => r.target + "\u0000" + (r.endpoint || "");
  const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(2));

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  function sparkline(rtts) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-label", "RTT");
    const line = document.createElementNS(ns, "polyline");
    const max = Math.max(0, ...rtts);
    const step = rtts.length > 1 ? SPARK_W / (rtts.length - 1) : 0;
    line.setAttribute("points", rtts
      .map((v, i) => `${(i * step).toFixed(1)},${(max > 0 ? 24 - (22 * v) / max : 24).toFixed(1)}`)
      .join(" "));
    svg.append(line);
    return svg;
  }

  function why(parts) {
    return parts.filter((p) => p !== null && p !== undefined && p !== "").join(" · ");
  }

  function targetRow(r) {
    const name = el("b", {}, r.target);
    if (r.endpoint) name.append(" ", el("small", {}, `[${r.endpoint}]`));
    const sessions = Object.entries(r.sessions || {}).map(([k, n]) => `${k} ${n}`).join(" · ");
    let failure = "–";
    if (r.reason) {
      failure = el("span", {}, why([r.reason, r.diagnosis, r.close_code ? `close ${r.close_code}` : null]));
      if (r.failed_unix_ms) {
        failure.append(" ", el("small", {}, `${Math.max(0, Math.round((Date.now() - r.failed_unix_ms) / 1000))}s ago`));
      }
      failure.append(el("br"), el("small", {}, r.detail || ""));
    }
    const cert = r.cert_not_after_unix
      ? `${Math.floor((r.cert_not_after_unix - Date.now() / 1000) / 86400)} days` : "–";
    const pong = r.last_pong_age_seconds === null || r.last_pong_age_seconds === undefined
      ? "–" : `${r.last_pong_age_seconds.toFixed(1)} s ago`;
    return el("tr", { class: r.healthy ? "up" : "down", "data-target": r.target, "data-endpoint": r.endpoint || "" },
      el("td", { class: "name" }, name, el("br"), el("small", {}, r.url)),
      el("td", { class: "state" }, el("span", { class: "badge" }, r.healthy ? "up" : "down")),
      el("td", { class: "sessions wide num" }, sessions),
      el("td", { class: "spark" }, sparkline(r.rtt_recent_ms || [])),
      el("td", { class: "rtt num" }, `${fmt(r.rtt_p50_ms)} / ${fmt(r.rtt_p99_ms)} ms`),
      el("td", { class: "pong wide num" }, pong),
      el("td", { class: "failure" }, failure),
      el("td", { class: "cert wide num" }, cert));
  }

  function renderTargets() {
    const body = $("#targets tbody");
    body.replaceChildren(...[...rows.values()].map(targetRow));
    if (!rows.size) body.append(el("tr", {}, el("td", { colspan: 8, class: "empty" }, "No targets.")));
    const top = [...rows.values()].filter((r) => !r.endpoint);
    const up = top.filter((r) => r.healthy).length;
    $("#summary").textContent = `${top.length} targets · ${up} up · ${top.length - up} down`;
    const filter = $("#filter");
    const chosen = filter.value;
    const names = [...new Set([...rows.values()].map((r) => r.target))];
    filter.replaceChildren(el("option", { value: "" }, "all"),
      ...names.map((n) => el("option", n === chosen ? { selected: "" } : {}, n)));
    filter.value = chosen;
  }

  function eventItem(e) {
    const who = e.target === "" ? "host" : e.session !== undefined ? `${e.target} #${e.session}` : e.target;
    const when = new Date(e.unix_ms).toLocaleTimeString();
    return el("li", { "data-seq": e.seq, "data-kind": e.kind, "data-target": e.target },
      el("time", {}, when), el("b", {}, who), " ",
      el("span", { class: "kind" }, e.kind.replace(/_/g, " ")), " ",
      el("span", { class: "why" }, why([e.reason, e.diagnosis, e.close_code ? `close ${e.close_code}` : null])), " ",
      el("small", {}, e.detail || ""));
  }

  function renderTimeline() {
    const list = $("#timeline");
    list.replaceChildren(...events.slice().reverse().map(eventItem));
    if (!events.length) list.append(el("li", { class: "empty" }, "No events yet."));
    applyFilter();
  }

  function applyFilter() {
    const t = $("#filter").value;
    for (const li of $("#timeline").children) {
      li.hidden = t !== "" && li.dataset.target !== t && li.dataset.target !== "";
    }
  }

  function addEvents(list) {
    const fresh = list.filter((e) => e.seq > lastSeq);
    if (!fresh.length) return;
    lastSeq = fresh[fresh.length - 1].seq;
    events = events.concat(fresh).slice(-MAX_EVENTS);
    renderTimeline();
  }

  function renderHost(h) {
    const box = $("#host");
    if (!h) {
      box.replaceChildren(el("p", { class: "empty" }, "No host scan yet."));
      return;
    }
    const tw = el("span", { class: h.time_wait_port_ratio >= 0.5 ? "tw warn" : "tw" },
      `TIME_WAIT ${h.time_wait} (${(h.time_wait_port_ratio * 100).toFixed(1)} % of ${h.ephemeral_ports} ephemeral ports)`);
    const states = el("table", { id: "states" }, el("thead", {}, el("tr", {}, el("th", {}, "State"), el("th", {}, "Sockets"))),
      el("tbody", {}, ...Object.entries(h.by_state).map(([s, n]) => el("tr", {}, el("td", {}, s), el("td", { class: "num" }, n)))));
    const head = ["Port", "ESTABLISHED", "CLOSE_WAIT", "oldest CLOSE_WAIT", "TIME_WAIT", "accept queue"];
    const ports = el("table", { id: "ports" }, el("thead", {}, el("tr", {}, ...head.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...Object.entries(h.ports).map(([port, p]) => {
        const n = (s) => p.by_state[s] || 0;
        const cw = el("td", { class: "num" }, n("close_wait"));
        if (p.close_wait_over_age > 0) cw.append(" ", el("span", { class: "warn" }, `${p.close_wait_over_age} past age`));
        const queue = el("td", { class: "num" }, p.listen_queue);
        if (p.listen_queue_ratio !== null && p.listen_queue_ratio !== undefined) {
          const full = p.listen_queue_ratio >= 0.9; // kernel::host::ACCEPT_QUEUE_SATURATED
          queue.append(" ", el("span", full ? { class: "warn" } : {},
            full ? `${(p.listen_queue_ratio * 100).toFixed(0)} % full` : `(${(p.listen_queue_ratio * 100).toFixed(0)} %)`));
        }
        return el("tr", {}, el("td", {}, port), el("td", { class: "num" }, n("established")), cw,
          el("td", { class: "num" }, `${p.close_wait_oldest_seconds.toFixed(0)} s`),
          el("td", { class: "num" }, n("time_wait")), queue);
      })));
    const parts = [el("p", {}, `${h.total} sockets · `, tw),
      el("div", { class: "grid" }, el("div", { class: "scroll" }, states), el("div", { class: "scroll" }, ports))];
    if (h.suspicious && h.suspicious.length) {
      parts.push(el("h3", {}, "Worth a look"), el("ul", { id: "suspicious" }, ...h.suspicious.slice(0, 20).map((s) =>
        el("li", {}, el("code", {}, `${s.local} → ${s.remote}`), ` ${s.state} `, el("small", {}, s.why)))));
    }
    box.replaceChildren(...parts);
  }

  function onMessage(m) {
    switch (m.type) {
      case "snapshot":
        rows.clear();
        for (const r of m.targets) rows.set(key(r), r);
        events = [];
        lastSeq = 0;
        renderTargets();
        addEvents(m.events);
        renderTimeline();
        renderHost(m.host);
        break;
      case "targets":
        for (const r of m.removed || []) rows.delete(key(r));
        for (const r of m.targets) rows.set(key(r), r);
        renderTargets();
        break;
      case "events":
        addEvents(m.events);
        break;
      case "host":
        renderHost(m.host);
        break;
    }
  }

  function status(text, live) {
    const c = $("#conn");
    c.textContent = text;
    c.className = live ? "conn live" : "conn down";
  }

  function connect() {
    const url = new URL("api/v1/stream", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    const ws = new WebSocket(url, "sockpulse.v1");
    ws.onopen = () => {
      retryMs = 1000;
      status("live", true);
    };
    ws.onmessage = (ev) => {
      try {
        onMessage(JSON.parse(ev.data));
      } catch (e) {
        console.warn("sockpulse: bad stream message", e);
      }
    };
    ws.onclose = () => {
      status(`disconnected from the agent: reconnecting in ${Math.round(retryMs / 1000)} s`, false);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("form.filter");
    form.addEventListener("submit", (ev) => ev.preventDefault());
    form.querySelector("button").hidden = true;
    $("#filter").addEventListener("change", applyFilter);
    status("connecting…", false);
    connect();
  });
})();
