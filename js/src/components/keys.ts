// Inputs inside notebook outputs: keep their key presses from JupyterLab's shortcuts.
/** Keep key presses in `el` away from the page: JupyterLab's notebook shortcuts otherwise take
 * arrow keys from a focused slider (and digits from a number box). The default action stays. */
export function ownKeys<T extends HTMLElement>(el: T): T {
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  el.addEventListener("keydown", (e) => e.stopPropagation());
  return el;
}
