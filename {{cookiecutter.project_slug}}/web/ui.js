// Page helpers: forms and buttons that show they are busy, announce their outcome to screen
// readers (each form's `.message` is a live region) and point at the field that was wrong.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Show `text` in the live region of `scope` (a form, a section), else of its section. */
export function say(scope, text, kind = "error") {
  const box = scope.matches(".message")
    ? scope
    : ($(".message", scope) ?? $(".message", scope.closest("section, main")));
  box.setAttribute("aria-live", kind === "error" ? "assertive" : "polite");
  box.dataset.kind = kind;
  box.textContent = text;
}

/** What to tell a person about an error of the API or of the browser's passkey prompt. */
export function explain(error) {
  if (error?.name === "NotAllowedError") {
    return "No passkey was used: the prompt was closed or timed out.";
  }
  if (error?.name === "InvalidStateError") {
    return "This device already holds a passkey for your account.";
  }
  return error?.message ?? String(error);
}

function markField(form, error) {
  let field = error?.field ? form.elements.namedItem(error.field) : null;
  if (!field && error?.code === "password_rejected") {
    field = $('[autocomplete="new-password"]', form);
  }
  if (!(field instanceof HTMLElement)) return;
  field.setAttribute("aria-invalid", "true");
  field.focus();
}

async function busy(control, scope, work) {
  control.disabled = true;
  scope.setAttribute("aria-busy", "true");
  try {
    await work();
  } finally {
    control.disabled = false;
    scope.removeAttribute("aria-busy");
  }
}

/** On submit: `handler(values, form)`; a thrown error is announced and its field focused. */
export function onSubmit(form, handler, { onError } = {}) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    for (const field of form.elements) field.removeAttribute("aria-invalid");
    say(form, "");
    const values = Object.fromEntries(new FormData(form));
    busy($("[type=submit]", form), form, async () => {
      try {
        await handler(values, form);
      } catch (error) {
        if (onError?.(error)) return;
        say(form, explain(error));
        markField(form, error);
      }
    });
  });
}

/** On click: `handler()`; an error is announced in the live region of `scope`. */
export function onClick(button, scope, handler, { onError } = {}) {
  button.addEventListener("click", () =>
    busy(button, scope, async () => {
      say(scope, "");
      try {
        await handler();
      } catch (error) {
        if (!onError?.(error)) say(scope, explain(error));
      }
    }),
  );
}

/** Show `element` (hidden until now) and move the keyboard focus to its heading. */
export function reveal(element) {
  element.hidden = false;
  const heading = $("h1, h2", element) ?? element;
  heading.setAttribute("tabindex", "-1");
  heading.focus();
}

/** A small element builder: h("li", {class: "row"}, "text", child). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value !== false && value != null) element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.filter((child) => child != null && child !== false));
  return element;
}

export const when = (iso) =>
  iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "never";

/** The `?token=` of an emailed link, then dropped from the address bar and the history. */
export function takeToken() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  url.searchParams.delete("token");
  history.replaceState(null, "", url);
  return token;
}
