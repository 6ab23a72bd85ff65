import * as api from "/api.js";
import { $, onClick, onSubmit, say } from "/ui.js";

const NOTICES = {
  "signed-out": "You are signed out.",
  "session-ended": "Your session has ended. Sign in again to continue.",
};
const notice = NOTICES[new URLSearchParams(location.search).get("notice")];
if (notice) say($("#page-message"), notice, "info");

const done = () => location.assign("/account/");
let mfaToken = null;

function secondStep(answer) {
  mfaToken = answer.mfa_token;
  $("#first-step").hidden = true;
  $("#second-passkey-area").hidden =
    !answer.methods.includes("passkey") || !api.passkeysSupported();
  $("#second-step").hidden = false;
  $("#code").focus(); // its description says what to type
}

const passwordForm = $("#password-form");
onSubmit(
  passwordForm,
  async ({ email, password }) => {
    const answer = await api.signIn(email, password);
    if (answer.mfa_required) secondStep(answer);
    else done();
  },
  {
    onError(error) {
      $("#resend").hidden = error.code !== "email_not_verified";
      return false; // announce it as usual
    },
  },
);

onClick($("#resend"), passwordForm, async () => {
  await api.resendVerification($("#email").value);
  $("#resend").hidden = true;
  say(passwordForm, "A new verification link is on its way. Check your inbox.", "ok");
});

onSubmit($("#code-form"), async ({ code }) => {
  await api.verifySecondStep(mfaToken, code);
  done();
});

if (api.passkeysSupported()) {
  onClick($("#passkey"), $("#passkey-area"), async () => {
    await api.signInWithPasskey();
    done();
  });
  onClick($("#second-passkey"), $("#second-passkey-area"), async () => {
    await api.signInWithPasskey(mfaToken);
    done();
  });
} else {
  $("#passkey-area").hidden = true;
}
