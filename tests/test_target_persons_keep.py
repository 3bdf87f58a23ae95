"""`existing_properties`: what history may do to persons and groups a PostHog project already
holds (keep with and without reading PostHog, overwrite), in the stand-in's final state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.persons_harness import (
    amplitude_event,
    build_export,
    truth_of,
)
from tests.target_support import (
    messages_with_states,
    run_target,
    target_config,
)
from tests.target_support import (
    posthog as posthog,  # the fixture
)
from tests.testbed.persons import PersonView
from tests.testbed.posthog import PostHogStandIn


def test_keep_existing_properties_only_fills_what_is_missing(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A project with live data: history never overwrites a property already there."""
    export = build_export(seed=21)
    people = posthog.people
    people.add_person(["user-2"], {"plan": "live-plan", "email": "two@example.com"})
    people.add_person(["user-5", "dev-5-0"], {"nickname": "live-nick"})
    people.add_group("company", "globex", {"name": "Globex (live)"})
    config = target_config(tmp_path, posthog, existing_properties="keep")
    run = run_target(config, messages_with_states(export.records, 50), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    truth = truth_of(export)
    two = people.person("user-2")
    assert two is not None
    assert two.properties["plan"] == "live-plan"  # kept
    assert two.properties["email"] == "two@example.com"
    assert two.properties["step"] == truth.user_properties["user-2"]["step"]  # filled
    five = people.person("user-5")
    assert five is not None and five.properties["nickname"] == "live-nick"
    # Group properties are never sent in this mode (PostHog has no set-once for groups).
    assert people.groups()[("company", "globex")] == {"name": "Globex (live)"}
    assert "keep: " in run.stderr and "group updates not sent" in run.stderr
    # A user PostHog did not know yet gets every value.
    fresh = next(u for u in truth.user_properties if u not in ("user-2", "user-5"))
    person: PersonView | None = people.person(fresh)
    assert person is not None
    assert person.properties["plan"] == truth.user_properties[fresh]["plan"]


def test_keep_fills_gaps_in_later_runs_and_says_what_it_cannot_update(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """keep never replaces a value PostHog holds; a later run still fills a property that
    appears only then, and says how many persons' values it filled earlier changed since
    (PostHog keeps those: keep cannot tell them from live values without reading PostHog)."""
    posthog.people.add_person(["bob"], {"plan": "live"})
    config = target_config(tmp_path, posthog, existing_properties="keep")

    def run(records: list[dict[str, Any]]) -> str:
        done = run_target(config, messages_with_states(records, 2), tmp_path, posthog)
        assert done.returncode == 0, done.stderr
        return done.stderr

    run(
        [amplitude_event(0, "ann", "a", 1, plan="A"), amplitude_event(1, "bob", "b", 1, plan="old")]
    )
    stderr = run(
        [
            amplitude_event(2, "ann", "a", 2, plan="B", seats=3),
            amplitude_event(3, "bob", "b", 2, plan="x"),
        ]
    )
    ann, bob = posthog.people.person("ann"), posthog.people.person("bob")
    assert ann is not None and bob is not None
    assert ann.properties["plan"] == "A" and ann.properties["seats"] == 3  # filled later
    assert bob.properties["plan"] == "live"
    assert (
        "existing_properties is keep: 2 persons have history that changed since their "
        "properties were first filled" in stderr
    )


def test_keep_with_the_query_api_spares_live_values_and_updates_its_own(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """With a personal API key, keep reads once which properties each person and group held
    before the migration: those are never changed; the migration's own are newest-wins across
    runs (set, and removed when Amplitude no longer shows them: null for a group)."""
    posthog.people.add_person(["bob"], {"plan": "live", "email": "bob@example.com"})
    config = target_config(
        tmp_path, posthog, existing_properties="keep", app_host=posthog.url,
        personal_api_key=posthog.query_api.personal_api_key,
        project_id=str(posthog.query_api.project_id),
    )  # fmt: skip

    def run(records: list[dict[str, Any]]) -> str:
        done = run_target(config, messages_with_states(records, 2), tmp_path, posthog)
        assert done.returncode == 0, done.stderr
        return done.stderr

    posthog.people.add_group("company", "globex", {"name": "Globex (live)"})

    def grouped(record: dict[str, Any], key: str, **values: Any) -> dict[str, Any]:
        return {**record, "groups": {"company": [key]},
                "group_properties": {"company": {key: values}}}  # fmt: skip

    ann_1 = amplitude_event(0, "ann", "a", 1, plan="A", seats=3)
    bob_1 = amplitude_event(1, "bob", "b", 1, plan="old", nick="n1")
    run([
        grouped(ann_1, "globex", name="Globex", seats=5),
        grouped(bob_1, "acme", name="Acme", tier=1),
    ])  # fmt: skip
    ann_2 = amplitude_event(2, "ann", "a", 2, plan="B")
    bob_2 = amplitude_event(3, "bob", "b", 2, nick="n2")
    stderr = run([
        grouped(ann_2, "globex", name="Globex", seats=7),
        grouped(bob_2, "acme", name="Acme Corp"),
    ])  # fmt: skip
    assert posthog.people.groups() == {
        ("company", "globex"): {"name": "Globex (live)", "seats": 7},  # live name kept
        ("company", "acme"): {"name": "Acme Corp", "tier": None},  # all its own: newest
    }
    ann, bob = posthog.people.person("ann"), posthog.people.person("bob")
    assert ann is not None and bob is not None
    assert ann.properties["plan"] == "B" and "seats" not in ann.properties  # its own: newest
    assert bob.properties["plan"] == "live" and bob.properties["email"] == "bob@example.com"
    assert bob.properties["nick"] == "n2"
    assert "existing_properties is keep" not in stderr  # nothing it could not do
    # Each person and group read once, in run 1: one query for persons, one for groups.
    assert len(posthog.query_api.requests) == 2


def test_keep_updates_wait_for_a_run_that_can_read_posthog(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A refused lookup (a wrong personal API key) sends no person update that could replace
    a live value: one line, and the next run with the right key sends it."""
    posthog.people.add_person(["bob"], {"plan": "live"})
    settings = {"existing_properties": "keep", "app_host": posthog.url,
                "project_id": str(posthog.query_api.project_id)}  # fmt: skip
    records = [amplitude_event(0, "bob", "b", 1, plan="old", nick="n1")]
    wrong = target_config(tmp_path, posthog, personal_api_key="phx_wrong", **settings)
    refused = run_target(wrong, messages_with_states(records, 2), tmp_path, posthog)
    assert refused.returncode == 0, refused.stderr
    assert "cannot read what PostHog's persons and groups hold (PostHog refused the personal " \
        "API key (401)" in refused.stderr  # fmt: skip
    assert "phx_wrong" not in refused.stderr
    bob = posthog.people.person("bob")
    assert bob is not None and bob.properties == {"plan": "live"}
    right = target_config(
        tmp_path, posthog, personal_api_key=posthog.query_api.personal_api_key, **settings
    )
    again = run_target(right, messages_with_states(records, 2), tmp_path, posthog)
    assert again.returncode == 0, again.stderr
    bob = posthog.people.person("bob")
    assert bob is not None and bob.properties == {"plan": "live", "nick": "n1"}


def test_overwrite_replaces_live_values_with_the_newest_history(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """The default, for a project that has no live data or where Amplitude is the truth."""
    export = build_export(seed=21)
    posthog.people.add_person(["user-2"], {"plan": "live-plan", "email": "two@example.com"})
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(export.records, 50), tmp_path,
        posthog,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    two = posthog.people.person("user-2")
    assert two is not None
    assert two.properties["plan"] == truth_of(export).user_properties["user-2"]["plan"]
    assert two.properties["email"] == "two@example.com"  # history has no email: untouched
