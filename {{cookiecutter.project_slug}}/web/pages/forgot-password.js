import * as api from "/api.js";
import { $, onSubmit, say } from "/ui.js";

onSubmit($("#forgot-form"), async ({ email }, form) => {
  // The same answer whether or not the address has an account (no enumeration).
  await api.forgotPassword(email);
  say(form, "If an account uses that address, a reset link is on its way. Check your inbox.", "ok");
});
