// The page the verification email links to (`/verify-email?token=`), also used to confirm a
// new address after an email change.
import * as api from "/api.js";
import { $, explain, onSubmit, say, takeToken } from "/ui.js";

const outcome = $("#outcome");
const token = takeToken();

try {
  if (!token) throw new Error("This link is incomplete: open the one from the email again.");
  await api.verifyEmail(token);
  say(outcome, "Your email address is confirmed. You can sign in now.", "ok");
  $("#continue").hidden = false;
  $("#continue").focus();
} catch (error) {
  say(outcome, error.code === "invalid_link" ? "This link has expired or was already used." : explain(error));
  $("#resend-form").hidden = false;
}

onSubmit($("#resend-form"), async ({ email }, form) => {
  await api.resendVerification(email);
  say(form, "If that address has an account waiting for confirmation, a new link is on its way.", "ok");
});
