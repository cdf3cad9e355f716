"""XRec's `no-profiles` ablation drops the profiles and keeps the item facts slot (the decision in
`whyrec.methods.cf_ablation` and docs/methods/xrec.md: facts are item metadata, not a user's CF signal)."""

import serve_tiny as T

import whyrec
from whyrec.config import GenerationConfig


def test_no_profiles_keeps_the_facts_slot_and_only_the_facts(tmp_path_factory):
    run = whyrec.load_run(T.tiny_run(tmp_path_factory) / "explainer", device="cpu",
                          generation=GenerationConfig(max_new_tokens=2))
    ex = run.model.explainer
    assert ex.module.cfg.item_facts  # the shared tiny run is trained with the slot
    user = next(u for u in ex.user_profiles if ex.user_profiles[u])
    item = next(i for i in ex.item_facts if ex.item_facts[i] and ex.item_profiles.get(i))
    full = ex.prompts([user], [item])[0]
    with run.model.cf_ablation("no-profiles", 0):
        bare = ex.prompts([user], [item])[0]
    slot = f"movie facts: {ex.item_facts[item].split()[0]}"
    assert slot in full and slot in bare
    assert "user profile: unknown" in bare and "movie profile: unknown" in bare
    assert "profile: unknown" not in full
    # the slot's whole text, not only its start, is what the full prompt had
    facts_part = lambda p: p.split("movie facts: ", 1)[1].split(" user profile: ", 1)[0]  # noqa: E731
    assert facts_part(bare) == facts_part(full)
