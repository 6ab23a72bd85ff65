// The page the reset email links to (`/reset-password?token=`).
import * as api from "/api.js";
import { $, onSubmit, say, takeToken } from "/ui.js";

const token = takeToken();
const form = $("#reset-form");
if (!token) say(form, "This link is incomplete: open the one from the email again.");

onSubmit(
  form,
  async ({ new_password: password }) => {
    await api.resetPassword(token, password);
    form.hidden = true;
    $(".links").hidden = true;
    say($("#outcome"), "Your password is changed. Sign in with the new one.", "ok");
    $("#continue").hidden = false;
    $("#continue").focus();
  },
  {
    onError(error) {
      if (error.code !== "invalid_link") return false;
      say(form, "This link has expired or was already used. Ask for a new one below.");
      return true;
    },
  },
);
