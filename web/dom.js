// Building the DOM without innerHTML: every value from the API or the
// identity provider goes in as text.

/**
 * h("p", { class: "hint", id: "x", onclick: fn }, "text", child, ...)
 * Attributes with false/null/undefined values are left out; `true` sets an
 * empty attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Moves keyboard and screen-reader focus to `el` (made focusable). */
export function focus(el) {
  if (!el.hasAttribute("tabindex")) el.setAttribute("tabindex", "-1");
  el.focus();
}
