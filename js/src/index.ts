// The anywidget module: one bundle, three views picked by the model's `_view` trait.
import type { WidgetModel } from "./rpc";
import { mountStatic, type PayloadHeader } from "./static";
import { renderView, type View } from "./view";
import { attentionView } from "./widgets/attention";
import { logitLens } from "./widgets/logit_lens";
import { tokenHeatmap } from "./widgets/token_heatmap";
import { neuronView } from "./widgets/neuron_view";
import { attributionView } from "./widgets/attribution";
import { patchingView } from "./widgets/patching";
import { perturbationFlowView } from "./widgets/perturbation";
import { steeringView } from "./widgets/steering";
import { autointerpTable } from "./widgets/autointerp_table";
import { probeView } from "./widgets/probe_view";
import { withExplain } from "./components/explain";
import { featureBrowser } from "./widgets/feature_browser";
import { promptFeatures } from "./widgets/prompt_features";
import { graphView } from "./widgets/graph_view";
import { unitDashboards } from "./widgets/unit_dashboards";
import { investigationView } from "./widgets/investigation";
import { censusView } from "./widgets/census";

export const VIEWS: Record<string, View> = {
  token_heatmap: tokenHeatmap,
  attention: attentionView,
  logit_lens: logitLens,
  neuron_view: withExplain(neuronView),
  patching: patchingView,
  attribution: attributionView,
  steering: steeringView,
  perturbation_flow: perturbationFlowView,
  autointerp_table: autointerpTable,
  probe_view: probeView,
  feature_browser: withExplain(featureBrowser),
  prompt_features: promptFeatures,
  graph_view: graphView,
  unit_dashboards: unitDashboards,
  investigation: investigationView,
  census: censusView,
};

function render({ model, el }: { model: WidgetModel; el: HTMLElement }): () => void {
  return renderView(model, el, VIEWS, true);
}

/** Entry point of static exports (called by boot.js). */
export function renderStatic(el: HTMLElement, header: PayloadHeader, data: ArrayBuffer, dataOffset: number): () => void {
  return mountStatic(el, header, data, dataOffset, VIEWS);
}

// The codec is exported for the real-browser round-trip test (tests/e2e/test_codec_browser.py).
export { csrToDense, decodeArray, decodeCSR } from "./codec";

export default { render };
