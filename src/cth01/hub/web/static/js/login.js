// Sign in: the token is exchanged for an HttpOnly session cookie (POST /api/session); the page
// never stores the token itself.
import { $, api, getSession, initShell, pageReady, say } from "./app.js";

function nextUrl() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // only paths of this hub: no scheme, no //host
  return /^\/(?!\/)/.test(next) && !next.startsWith("/login") ? next : "/";
}

async function init() {
  await initShell();
  const session = await getSession();
  if (session) {
    say($("#current"), `Signed in as ${session.name} (${session.role}). Sign in again to switch.`);
  } else if (new URLSearchParams(location.search).get("next")) {
    say($("#current"), "This page needs a sign-in.");
  }
  $("#token").focus();
  pageReady();
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("#login-msg");
    const token = $("#token").value.trim();
    if (!token) return;
    say(msg, "Signing in…");
    try {
      const who = await api("/api/session", { method: "POST", body: { token }, allow401: true });
      if (!who) { say(msg, "That token is not valid for this hub.", "error"); return; }
      say(msg, `Signed in as ${who.name} (${who.role}).`, "ok");
      location.assign(nextUrl());
    } catch (e) {
      say(msg, e.status === 404 || e.status === 405
        ? "This hub does not offer sign-in sessions (POST /api/session)." : `Not signed in: ${e.message}`, "error");
    }
  });
}

init();
