import * as api from "/api.js";
import { $, onSubmit, reveal } from "/ui.js";

onSubmit($("#sign-up-form"), async ({ email, password }) => {
  // The same answer whether or not the address already has an account (no enumeration).
  await api.register(email, password);
  $("#form-area").hidden = true;
  $("#sent-to").textContent = email;
  reveal($("#sent"));
});
