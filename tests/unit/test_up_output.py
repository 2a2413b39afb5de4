"""What `invites up` prints: the credentials it generated, never ones it was given (SPEC §8)."""

from __future__ import annotations

from cli.commands import stack
from cli.commands.demo import Demo

GIVEN = "a-production-token-from-the-environment"
ENV = {
    "DISPATCH_LISTEN": "127.0.0.1:50051",
    "WEBHOOK_LISTEN": "127.0.0.1:8080",
    "WHATSAPP_API_BASE_URL": "http://127.0.0.1:8090",
}
DEMO = Demo(
    target="127.0.0.1:50051",
    token=GIVEN,
    workspace_id="w",
    actor_id="a",
    event_id="e",
    template_id="t",
)


def printed(generated: list[str], token: str) -> str:
    env = {**ENV, "DISPATCH_BACKEND_TOKENS": f"{token},another"}
    with stack.console.capture() as capture:
        stack.print_next_steps(env, generated, with_sandbox=True)
        stack.print_demo(DEMO, stack.shown_token(env, generated))
    return capture.get()


def test_a_token_the_operator_gave_is_never_printed() -> None:
    text = printed([], GIVEN)
    assert GIVEN not in text
    assert "another" not in text
    # a shell expansion of the operator's own variable (pasted, it works; printed, it tells nothing)
    assert '"authorization: Bearer ${DISPATCH_BACKEND_TOKENS%%,*}"' in text
    assert 'INVITES_TOKEN="${DISPATCH_BACKEND_TOKENS%%,*}"' in text


def test_a_token_it_generated_is_printed_with_the_commands_that_use_it() -> None:
    token = "generated-local-token"
    text = printed(["DISPATCH_BACKEND_TOKENS"], token)
    assert f"DISPATCH_BACKEND_TOKENS={token},another" in text
    assert f'"authorization: Bearer {token}"' in text
    assert f'INVITES_TOKEN="{token}"' in text
