// PromptFeatures in happy-dom: the clamp panel reads the selected token, not the last one.
import { describe, expect, it } from "vitest";
import { encodeArray } from "../src/codec";
import { cleanUpAfterEach, mount, tick } from "./mount";

cleanUpAfterEach();

const f32 = (v: number[]) => encodeArray(v, [v.length], "float32");
const preds = (tokens: string[], probs: number[]) => ({ tokens, probs: f32(probs) });

describe("prompt features", () => {
  it("asks for the selected token's distribution and says which token it is", async () => {
    const stops = [0, 0.5, 1, 2];
    const { el } = mount(
      {
        _view: "prompt_features", prompt: "The chef added", tokens: ["<bos>", "The", " chef", " added"],
        token_max: f32([0, 1, 3, 2]), pos: 2, by: "activation", target: "", active: [[5, 3, 0.4]], stops, hook: "blocks.1.hook_resid_pre",
      },
      [
        ["feature_acts", { feature: 5 }, { feature: 5, acts: f32([0, 1, 3, 2]) }],
        ["intervene", { feature: 5, stop: 2, pos: 2 }, { pos: 2, value: 3, kl: 0.7, before: preds([" salt"], [0.9]), after: preds([" pepper"], [0.6]) }],
      ],
      false,
    );
    await tick(20);
    const result = el.querySelector(".iw-pf-result")!;
    expect(result.querySelector(".iw-pf-at")!.textContent).toBe('after token 2: " chef"');
    expect(result.textContent).toContain("pepper");
    expect(el.querySelector(".iw-pf-intervene h4")!.textContent).toContain("after the selected token");
  });
});
