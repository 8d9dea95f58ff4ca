// Shared frame of every widget view: root element, request channel, errors, kernel-only controls.
import { h } from "./components/dom";
import { Rpc, type WidgetModel } from "./rpc";

export interface ViewContext {
  model: WidgetModel;
  root: HTMLElement;
  rpc: Rpc;
  /** false in a static HTML export: no kernel behind the model */
  live: boolean;
  /** Mark a control as needing the kernel (disabled when there is none). */
  needsKernel<T extends HTMLElement>(el: T): T;
  showError(message: string): void;
  clearError(): void;
  /** Run `fn` once the view's first frame has been painted (for work that can wait for it). */
  afterPaint(fn: () => void): void;
  /** A performance mark named `what`, with the view's DOM id as its detail. */
  mark(what: string): void;
}

export type View = (ctx: ViewContext) => (() => void) | void;

export const STATIC_NOTE = "Static export: re-running the model needs a running kernel, so those controls are disabled.";

/** A page-wide serial: anywidget loads a fresh copy of this module per widget, so a module-level
 * counter would restart and give every widget the same DOM id. */
function nextSerial(): number {
  const g = globalThis as { __iwSerial?: number };
  g.__iwSerial = (g.__iwSerial ?? 0) + 1;
  return g.__iwSerial;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function renderView(model: WidgetModel, el: HTMLElement, views: Record<string, View>, live: boolean): () => void {
  const name = String(model.get("_view") ?? "");
  const root = h("div", { class: "iw-root", attrs: { "data-view": name, id: `iw-${name || "view"}-${nextSerial()}` } });
  const errors = h("div", { class: "iw-errors" });
  root.append(errors);
  const mark = (what: string) => performance?.mark?.(what, { detail: root.id });
  mark("iw-render-start");
  const painted: (() => void)[] = [];

  const ctx: ViewContext = {
    model,
    root,
    rpc: new Rpc(model),
    live,
    needsKernel(control) {
      control.setAttribute("data-needs-kernel", "");
      if (!live) {
        (control as unknown as HTMLInputElement).disabled = true;
        control.title = "needs a running kernel";
      }
      return control;
    },
    showError(message) {
      const close = h("button", { class: "iw-error-close", text: "×", attrs: { type: "button", "aria-label": "dismiss" } });
      const box = h("div", { class: "iw-error", attrs: { role: "alert" } }, [h("span", { text: message }), close]);
      close.addEventListener("click", () => box.remove());
      errors.replaceChildren(box);
    },
    clearError() {
      errors.replaceChildren();
    },
    afterPaint(fn) {
      painted.push(fn);
    },
    mark,
  };

  el.append(root);
  let cleanup: (() => void) | void;
  const view = views[name];
  try {
    if (!view) throw new Error(`unknown view ${JSON.stringify(name)}; known: ${Object.keys(views).join(", ")}`);
    cleanup = view(ctx);
  } catch (e) {
    ctx.showError(`This widget could not be drawn: ${errorText(e)}`);
  }
  if (!live && root.querySelector("[data-needs-kernel]")) {
    root.insertBefore(h("div", { class: "iw-static-note", text: STATIC_NOTE }), root.firstChild);
  }
  const done = () => {
    mark("iw-render-end");
    for (const fn of painted.splice(0)) fn();
  };
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => setTimeout(done, 0));
  else setTimeout(done, 0);

  return () => {
    cleanup?.();
    ctx.rpc.dispose();
    root.remove();
  };
}

/** Run a request and route failure to the view's error area; resolves to null on failure. */
export async function ask<T>(ctx: ViewContext, method: string, args: Record<string, unknown>): Promise<T | null> {
  try {
    const out = await ctx.rpc.request<T>(method, args);
    return out;
  } catch (e) {
    ctx.showError(errorText(e));
    return null;
  }
}
