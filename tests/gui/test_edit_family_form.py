"""An edit family's form (issue 28): its previews are the first before/after pairs, each edited with its own caption,
so the sample prompts field is not shown for it — and still is for its text-to-image parent."""

from desktop_app.train.form_groups import field_visible


def test_the_sample_prompts_field_is_hidden_for_an_edit_family_only():
    assert not field_visible("sampling.prompts", "lora", "fluxkontext")
    assert field_visible("sampling.prompts", "lora", "flux")
    assert field_visible("sampling.seeds", "lora", "fluxkontext")
