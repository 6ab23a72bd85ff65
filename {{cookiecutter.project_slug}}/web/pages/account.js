import * as api from "/api.js";
import { $, explain, h, onClick, onSubmit, reveal, say, when } from "/ui.js";

/** A 401 that outlived the refresh: the session is over (revoked, expired, signed out), or
 * there never was one (`not_authenticated`: no cookies at all). */
function signedOut(error) {
  if (error?.status !== 401) return false;
  location.replace(error.code === "not_authenticated" ? "/" : "/?notice=session-ended");
  return true;
}
const guarded = { onError: signedOut };

// --- step-up: a sensitive change answered 403 `reauthentication_required` ------------------
const dialog = $("#reauth");
const reauthForm = $("#reauth-form");
let settle = null;

function confirmIdentity() {
  reauthForm.reset();
  say(reauthForm, "");
  dialog.showModal(); // focuses the password field; Escape cancels
  return new Promise((resolve) => {
    settle = resolve;
  });
}

function closeDialog(confirmed) {
  if (dialog.open) dialog.close();
  settle?.(confirmed);
  settle = null;
}

onSubmit(
  reauthForm,
  async ({ password, code }) => {
    await api.reauthenticate(password ? { password } : { code });
    closeDialog(true);
  },
  guarded,
);
$("#reauth-cancel").addEventListener("click", () => closeDialog(false));
dialog.addEventListener("close", () => closeDialog(false));

/** Run `action`; when the API wants a fresh sign-in, ask for it, then run it once more. */
async function stepUp(action) {
  try {
    return await action();
  } catch (error) {
    if (error.code !== "reauthentication_required") throw error;
    if (!(await confirmIdentity())) throw new Error("Cancelled: nothing was changed.");
    return action();
  }
}

const button = (label, className, attributes = {}) =>
  h("button", { type: "button", class: className, ...attributes }, label);

// --- sessions ------------------------------------------------------------------------------
const sessionsSection = $("#sessions-section");

async function showSessions() {
  const sessions = await api.sessions();
  $("#sessions").replaceChildren(
    ...sessions.map((session) => {
      let end = h("span", { class: "badge" }, "This device");
      if (!session.current) {
        end = button("Sign out", "danger small", { "aria-label": `Sign out ${session.device}` });
        onClick(
          end,
          sessionsSection,
          async () => {
            await api.revokeSession(session.id);
            await showSessions();
            say(sessionsSection, `Signed out ${session.device}.`, "ok");
          },
          guarded,
        );
      }
      const where = session.ip_address ?? "unknown address";
      return h(
        "li",
        { "data-current": session.current },
        h(
          "div",
          {},
          h("span", { class: "what" }, session.device),
          h(
            "span",
            { class: "when" },
            `${where} · signed in ${when(session.created_at)} · active ${when(session.last_seen_at)}`,
          ),
        ),
        end,
      );
    }),
  );
}

onClick($("#reload-sessions"), sessionsSection, showSessions, guarded);

// --- password --------------------------------------------------------------------------------
onSubmit(
  $("#password-form"),
  async ({ current_password: current, new_password: next }, form) => {
    await stepUp(() => api.changePassword(current, next));
    form.reset();
    say(form, "Password changed. Your other devices were signed out.", "ok");
    await showSessions();
  },
  guarded,
);

// --- authenticator app and recovery codes ------------------------------------------------------
const totpSection = $("#totp-section");
const passkeysSection = $("#passkeys-section");

async function showFactors() {
  const status = await api.mfaStatus();
  const anyFactor = status.totp || status.passkeys.length > 0;
  $("#totp-state").textContent = status.totp
    ? `On: signing in asks for a code from your app. ${status.recovery_codes_left} recovery codes left.`
    : "Off. Add a second step to signing in with an app such as Google Authenticator, 1Password or Aegis.";
  $("#totp-start").hidden = status.totp;
  $("#totp-off").hidden = !status.totp;
  $("#recovery-new").hidden = !anyFactor;
  $("#passkeys").replaceChildren(...status.passkeys.map(passkeyRow));
}

function showCodes(codes) {
  $("#recovery-codes").replaceChildren(...codes.map((code) => h("li", {}, h("code", {}, code))));
  $("#totp-actions").hidden = true;
  reveal($("#recovery"));
}

onClick(
  $("#totp-start"),
  totpSection,
  async () => {
    const setup = await stepUp(api.startTotp);
    // As an image, not as markup: nothing the API sends becomes part of the page. The SVG
    // is made for inlining in HTML; a standalone image needs its namespace.
    const svg = setup.qr_svg.includes("xmlns=")
      ? setup.qr_svg
      : setup.qr_svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"');
    $("#totp-qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
    $("#totp-secret").textContent = setup.secret;
    $("#totp-actions").hidden = true;
    reveal($("#totp-setup"));
  },
  guarded,
);

onSubmit(
  $("#totp-form"),
  async ({ code }, form) => {
    const { recovery_codes: codes } = await stepUp(() => api.enableTotp(code));
    form.reset();
    $("#totp-setup").hidden = true;
    await showFactors();
    say(totpSection, "The authenticator app is on. Your other devices were signed out.", "ok");
    showCodes(codes);
  },
  guarded,
);

onClick(
  $("#recovery-new"),
  totpSection,
  async () => showCodes((await stepUp(api.newRecoveryCodes)).recovery_codes),
  guarded,
);

onClick(
  $("#recovery-done"),
  totpSection,
  async () => {
    $("#recovery").hidden = true;
    $("#totp-actions").hidden = false;
    await showFactors();
    $("#totp-title").setAttribute("tabindex", "-1");
    $("#totp-title").focus();
  },
  guarded,
);

onClick(
  $("#totp-off"),
  totpSection,
  async () => {
    await stepUp(api.disableTotp);
    await showFactors();
    say(totpSection, "The authenticator app is off.", "ok");
  },
  guarded,
);

// --- passkeys ------------------------------------------------------------------------------
function passkeyRow(passkey) {
  const row = h("li", {});

  const view = (focus = false) => {
    const rename = button("Rename", "secondary small", { "aria-label": `Rename ${passkey.name}` });
    const remove = button("Remove", "danger small", { "aria-label": `Remove ${passkey.name}` });
    rename.addEventListener("click", edit);
    onClick(
      remove,
      passkeysSection,
      async () => {
        await stepUp(() => api.removePasskey(passkey.id));
        await showFactors();
        say(passkeysSection, `Removed ${passkey.name}.`, "ok");
      },
      guarded,
    );
    row.replaceChildren(
      h(
        "div",
        {},
        h("span", { class: "what" }, passkey.name),
        h(
          "span",
          { class: "when" },
          `Added ${when(passkey.created_at)} · last used ${when(passkey.last_used_at)}`,
        ),
      ),
      h("div", { class: "actions" }, rename, remove),
    );
    if (focus) rename.focus();
  };

  const edit = () => {
    const input = h("input", {
      name: "name",
      value: passkey.name,
      maxlength: "100",
      required: true,
      "aria-label": `New name for ${passkey.name}`,
    });
    const cancel = button("Cancel", "secondary small", { onclick: () => view(true) });
    const form = h("form", {}, input, h("button", { type: "submit", class: "small" }, "Save"), cancel);
    onSubmit(
      form,
      async ({ name }) => {
        passkey = await stepUp(() => api.renamePasskey(passkey.id, name));
        view(true);
        say(passkeysSection, `Renamed to ${passkey.name}.`, "ok");
      },
      guarded,
    );
    row.replaceChildren(form);
    input.select();
  };

  view();
  return row;
}

onSubmit(
  $("#passkey-form"),
  async ({ name }, form) => {
    const passkey = await stepUp(() => api.addPasskey(name));
    await showFactors();
    say(form, `Added ${passkey.name}. You can sign in with it now.`, "ok");
  },
  guarded,
);
if (!api.passkeysSupported()) {
  $("#passkey-form").hidden = true;
  say(passkeysSection, "This browser cannot use passkeys.", "info");
}

// --- signing out -----------------------------------------------------------------------------
const accountActions = $("#account-actions");
onClick($("#sign-out"), accountActions, async () => {
  await api.signOut();
  location.assign("/?notice=signed-out");
});
onClick(
  $("#sign-out-everywhere"),
  accountActions,
  async () => {
    await api.signOutEverywhere();
    location.assign("/?notice=signed-out");
  },
  guarded,
);

// --- first paint -----------------------------------------------------------------------------
try {
  const user = await api.me();
  $("#email").textContent = user.email;
  const sections = [
    [showSessions, sessionsSection],
    [showFactors, totpSection],
  ];
  await Promise.all(
    sections.map(([show, section]) =>
      show().catch((error) => signedOut(error) || say(section, explain(error))),
    ),
  );
} catch (error) {
  if (!signedOut(error)) say(accountActions, explain(error));
} finally {
  $("main").removeAttribute("aria-busy");
}
