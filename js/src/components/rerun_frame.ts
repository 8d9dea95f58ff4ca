// The frame of a view that the kernel re-runs: a toolbar above a body, redrawn on every `_rev`.
import type { ViewContext } from "../view";
import { h } from "./dom";
import { Tooltip } from "./tooltip";

export type DrawBody = (ctx: ViewContext, toolbar: HTMLElement, body: HTMLElement, tooltip: Tooltip) => void;

/** Append a toolbar and a body of class `bodyClass` to the root, `draw` them now and again on
 * every `_rev` change (one tooltip serves all redraws); returns the view's cleanup. */
export function rerunFrame(ctx: ViewContext, bodyClass: string, draw: DrawBody): () => void {
  const { model, root } = ctx;
  const toolbar = h("div", { class: "iw-toolbar" });
  const body = h("div", { class: bodyClass });
  root.append(toolbar, body);
  const tooltip = new Tooltip(root);
  const build = () => draw(ctx, toolbar, body, tooltip);
  build();
  model.on("change:_rev", build);
  return () => model.off("change:_rev", build);
}
