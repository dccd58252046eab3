"""Validation errors (pydantic's types) described in the reader's language."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel, Field, ValidationError
from pydantic_core.core_schema import ErrorType

from gateway.domain.input_errors import PROBLEMS, describe, problem, refusal
from gateway.domain.text import _l, use_locale

# Every number a type's message may take (pydantic's documented ctx keys).
CTX = {"min_length": 2, "max_length": 3, "pattern": "^[a-z]+$", "gt": 0, "ge": 1, "lt": 5,
       "le": 9, "multiple_of": 2, "expected": "'a', 'b' or 'c'"}


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_every_listed_type_is_one_of_pydantics() -> None:
    assert set(PROBLEMS) <= set(typing.get_args(ErrorType))


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_every_listed_type_reads_in_both_languages(kind: str) -> None:
    text = problem({"type": kind, "ctx": CTX})
    with use_locale("zh_CN"):
        chinese = str(text)
    assert _has_chinese(chinese) and not _has_chinese(text.english)
    assert "%(" not in chinese and "%(" not in text.english


def test_an_unlisted_type_or_an_odd_ctx_says_less_but_never_english_only() -> None:
    for error in ({"type": "complex_type"}, {"type": "greater_than", "ctx": {}}):
        assert problem(error).english == "invalid value"
        with use_locale("zh_CN"):
            assert str(problem(error)) == "值无效"


class Sample(BaseModel):
    name: str = Field(min_length=2, max_length=3)
    size: int = Field(gt=0)
    tags: list[str] = Field(max_length=1)

    def model_post_init(self, _context: object) -> None:
        if self.name == "no":
            raise refusal(_l("a structured query needs dataset"))


def _errors(**data: object) -> list[dict]:
    with pytest.raises(ValidationError) as exc:
        Sample.model_validate(data)
    return exc.value.errors()  # type: ignore[return-value]


def test_a_described_validation_error() -> None:
    message = describe(_errors(name="abcd", size=0, tags=["x", "y"]))
    assert message.english == ("name: should have at most 3 characters; size: should be greater "
                               "than 0; tags: should have at most 1 item")
    with use_locale("zh_CN"):
        assert str(message) == "name：应最多有 3 个字符；size：应大于 0；tags：应最多有 1 项"


def test_our_own_refusal_is_shown_as_written_and_the_whole_named() -> None:
    message = describe(_errors(name="no", size=1, tags=[]), whole=_l("the form"))
    assert message.english == "the form: a structured query needs dataset"
    assert message.render("zh_CN") == "表单：结构化查询需要 dataset"


def test_at_most_five_problems_and_never_empty() -> None:
    many = [{"type": "missing", "loc": ("body", f"f{i}")} for i in range(9)]
    assert describe(many).english.count("is required") == 5
    assert describe([]).english == "the request could not be read"
