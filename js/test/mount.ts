// Helpers of the happy-dom view tests: mount a view on a local model (the static-export shim, which
// answers requests from a table just as the kernel would), events, and the clean-up check.
import { afterEach, expect } from "vitest";
import { VIEWS } from "../src/index";
import { extractBuffers, requestKey } from "../src/rpc";
import { staticModel, type StoredAnswer } from "../src/static";
import { renderView, type View } from "../src/view";

/** [method, args, result]: the answer to one request. */
export type Answer = [string, Record<string, unknown>, unknown];

/** Render `state` (with `_rev: 0`) into a fresh element of the page; `answers` reply to requests. */
export function mount(state: Record<string, unknown>, answers: Answer[] = [], live = true, views: Record<string, View> = VIEWS) {
  const buffers: DataView[] = [];
  const table: Record<string, StoredAnswer> = {};
  for (const [method, args, result] of answers) {
    const [stripped] = extractBuffers(result, buffers);
    table[requestKey(method, args)] = { ok: true, result: stripped };
  }
  const model = staticModel({ _rev: 0, ...state }, table, buffers);
  const el = document.createElement("div");
  document.body.append(el);
  const dispose = renderView(model, el, views, live);
  return { model, el, dispose };
}

export const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
export const click = (el: Element) => el.dispatchEvent(new MouseEvent("click", { bubbles: true }));
export const over = (el: Element) => el.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));

/** After each test: empty the page, and check that no token text ran as script. */
export function cleanUpAfterEach(): void {
  afterEach(() => {
    document.body.replaceChildren();
    expect((window as any).__pwned).toBeUndefined();
  });
}
