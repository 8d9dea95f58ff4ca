// Kernel-only inputs that re-run the model: text fields + a Run button sending one small request.
import { ask, type ViewContext } from "../view";
import { h } from "./dom";

export interface Field {
  name: string;
  label: string;
  value: string;
  placeholder?: string;
  /** a textarea (prompts may hold newlines); Shift+Enter starts a new line */
  multiline?: boolean;
}

/** A form that sends `method` with {name: value} of every field; the kernel then updates the state. */
export function promptBar(ctx: ViewContext, method: string, fields: Field[]): HTMLFormElement {
  const inputs = fields.map((f) => {
    const attrs = { name: f.name, "aria-label": f.label, placeholder: f.placeholder ?? f.label };
    const cls = `iw-input iw-input-${f.name}`;
    return ctx.needsKernel(
      f.multiline ? h("textarea", { class: cls, attrs: { ...attrs, rows: 1 } }) : h("input", { class: cls, attrs: { ...attrs, type: "text" } }),
    );
  });
  inputs.forEach((el, i) => (el.value = fields[i].value));
  const run = ctx.needsKernel(h("button", { class: "iw-button", text: "Run", attrs: { type: "submit" } }));
  // data-lm-suppress-shortcuts: JupyterLab's keyboard shortcuts leave typing here alone (Enter submits)
  const form = h("form", { class: "iw-prompt", attrs: { "data-lm-suppress-shortcuts": "true" } }, [
    ...inputs.map((el, i) => h("label", { class: "iw-field" }, [h("span", { text: fields[i].label }), el])),
    run,
  ]);
  // Enter submits even where the page (JupyterLab) intercepts the browser's implicit submission.
  for (const el of inputs) {
    (el as HTMLElement).addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || e.shiftKey || e.isComposing) return;
      e.preventDefault();
      e.stopPropagation();
      form.requestSubmit();
    });
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!ctx.live) return;
    const args = Object.fromEntries(fields.map((f, i) => [f.name, inputs[i].value]));
    run.disabled = true;
    form.classList.add("iw-busy");
    ctx.clearError();
    await ask(ctx, method, args);
    run.disabled = false;
    form.classList.remove("iw-busy");
  });
  return form;
}

/** Send `method` with {[key]: text} once typing in `input` pauses for `ms` (kernel only; blank
 * text is not sent), keeping JupyterLab's shortcuts out of it. Returns a cancel for a pending send. */
export function sendAsTyped(ctx: ViewContext, input: HTMLInputElement | HTMLTextAreaElement, method: string, key: string, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (!ctx.live || !input.value.trim()) return;
      ctx.clearError();
      ask(ctx, method, { [key]: input.value });
    }, ms);
  });
  input.addEventListener("keydown", (e) => e.stopPropagation());
  return () => clearTimeout(timer);
}
