// The "Explain" panel of a unit view (the JS half of widgets/explain.py ExplainMixin).
// State: explain_state {status: idle|running|done|error|cancelled, step, done, total, calls,
// explanation, kind: llm|statistical, explainer, scores {name: number|null}, error}, explain_llm.
// Requests: "explain" {} starts, "explain_cancel" {} stops (kernel only).
import { fmt, h } from "./dom";
import { ask, type View, type ViewContext } from "../view";

export interface ExplainState {
  status?: string;
  step?: string;
  done?: number;
  total?: number;
  calls?: number;
  explanation?: string;
  kind?: string;
  explainer?: string;
  scores?: Record<string, number | null>;
  error?: string;
}

const SCORE_ROWS: [string, string][] = [
  ["correlation", "correlation (all tokens pooled)"],
  ["top_and_random", "correlation, top + random"],
  ["detection_balanced_accuracy", "detection balanced accuracy"],
  ["detection_auc", "detection AUC"],
  ["fuzzing_balanced_accuracy", "fuzzing balanced accuracy"],
  ["fuzzing_auc", "fuzzing AUC"],
];

/** The label offline explanations start with (autointerp/offline.py STATISTICAL_LABEL): the
 * badge says it, so the text shown beside the badge drops it rather than say it twice. */
export const STATISTICAL_LABEL = "[statistical, not LLM-written]";

/** An explanation's text as shown next to its badge. */
export function explanationText(kind: string, text: string): string {
  return kind === "statistical" && text.startsWith(STATISTICAL_LABEL) ? text.slice(STATISTICAL_LABEL.length).trimStart() : text;
}

/** Whether `top_and_random` is a statistic of its own here: it equals `correlation` whenever
 * every scored record is a "top" or a "random" one (the records a scan makes), and only then. */
export function topAndRandomDiffers(corr: ArrayLike<number>, topRand: ArrayLike<number>): boolean {
  for (let i = 0; i < corr.length; i++) {
    const a = corr[i];
    const b = topRand[i];
    if (Number.isNaN(a) !== Number.isNaN(b) || (!Number.isNaN(a) && Math.abs(a - b) > 1e-6)) return true;
  }
  return false;
}

/** A badge saying who wrote an explanation: statistics or which LLM. */
export function explainerBadge(kind: string, explainer: string): HTMLElement {
  const statistical = kind === "statistical";
  return h("span", {
    class: `iw-ai-badge ${statistical ? "iw-ai-statistical" : "iw-ai-llm"}`,
    text: statistical ? "statistical, not LLM-written" : `LLM: ${explainer}`,
    title: statistical ? "token and n-gram enrichment statistics; no language model was used" : `written by ${explainer}`,
  });
}

const num = (v: number | null | undefined) => (v === null || v === undefined ? NaN : v);

/** section.iw-ai-explain with the button, progress, cancel and the result; call update() when
 * explain_state changes (explainPanel listens itself; dispose() stops that). */
export function explainPanel(ctx: ViewContext): { el: HTMLElement; update: () => void; dispose: () => void } {
  const { model } = ctx;
  const button = ctx.needsKernel(h("button", { class: "iw-button iw-ai-explain-button", text: "Explain", attrs: { type: "button" } }));
  const cancel = ctx.needsKernel(h("button", { class: "iw-button iw-ai-cancel", text: "Cancel", attrs: { type: "button", hidden: true } }));
  const bar = h("progress", { class: "iw-ai-progress", attrs: { max: 4, value: 0, hidden: true } }) as HTMLProgressElement;
  const status = h("span", { class: "iw-ai-status iw-muted" });
  const body = h("div", { class: "iw-ai-body" });
  const el = h("section", { class: "iw-nv-panel iw-nv-wide iw-ai-explain" }, [
    h("h4", { text: "Explanation" }),
    h("div", { class: "iw-toolbar" }, [button, cancel, bar, status]),
    body,
  ]);

  button.addEventListener("click", async () => {
    if (!ctx.live) return;
    ctx.clearError();
    await ask(ctx, "explain", {});
  });
  cancel.addEventListener("click", () => {
    if (ctx.live) ask(ctx, "explain_cancel", {});
  });

  const update = () => {
    const s = (model.get("explain_state") ?? {}) as ExplainState;
    const running = s.status === "running";
    button.disabled = running || !ctx.live;
    cancel.hidden = !running;
    bar.hidden = !running;
    bar.max = s.total || 4;
    bar.value = s.done || 0;
    const who = model.get("explain_llm") ? "LLM" : "offline statistics";
    if (running) status.textContent = `${s.step ?? ""}… (${s.calls ?? 0} API calls)`;
    else if (s.status === "error" || s.status === "cancelled") status.textContent = "";
    else status.textContent = `explainer: ${who}`;
    if (s.status === "done") {
      const scores = s.scores ?? {};
      body.replaceChildren(
        h("div", { class: "iw-ai-text" }, [explainerBadge(s.kind ?? "", s.explainer ?? ""), h("span", { class: "iw-ai-explanation", text: explanationText(s.kind ?? "", s.explanation ?? "") })]),
        h(
          "table",
          { class: "iw-nv-table iw-ai-scores" },
          SCORE_ROWS.filter(([k]) => k !== "top_and_random" || topAndRandomDiffers([num(scores.correlation)], [num(scores.top_and_random)])).map(([k, label]) => h("tr", { attrs: { "data-score": k } }, [h("td", { text: label }), h("td", { class: "iw-num", text: fmt(num(scores[k])) })])),
        ),
      );
    } else if (s.status === "error" || s.status === "cancelled") {
      body.replaceChildren(h("div", { class: s.status === "error" ? "iw-ai-error" : "iw-muted", attrs: { role: "status" }, text: s.error ?? s.status }));
    } else if (!running) {
      body.replaceChildren(h("div", { class: "iw-muted", text: "Not explained yet." }));
    }
  };
  model.on("change:explain_state", update);
  model.on("change:explain_llm", update);
  update();
  return {
    el,
    update,
    dispose: () => {
      model.off("change:explain_state", update);
      model.off("change:explain_llm", update);
    },
  };
}

/** `view` with the Explain panel added (into its grid when it has one, else at the end) when the
 * widget has the ExplainMixin's `explain_state`; unchanged otherwise. */
export function withExplain(view: View): View {
  return (ctx) => {
    const cleanup = view(ctx);
    if (ctx.model.get("explain_state") === undefined) return cleanup;
    const panel = explainPanel(ctx);
    const grid = ctx.root.querySelector(".iw-nv-grid, .iw-fb-detail");
    (grid ?? ctx.root).append(panel.el);
    return () => {
      panel.dispose();
      cleanup?.();
    };
  };
}
