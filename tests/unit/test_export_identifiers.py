"""Identifier detectors (REQUIREMENTS §7). Fixtures are 合成/SYNTHETIC (SR-40): test files only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.export import identifiers as ids
from sandbox.export.identifiers import IdentifierKind as K
from sandbox.export.identifiers import Severity as S
from sandbox.export.results import Verdict
from sandbox.policy.models import Tier


def kinds(text: str, **kw: str) -> list[tuple[str, str]]:
    return [(f.kind.value, f.severity.value) for f in ids.scan_text(text, **kw)]


# ---------------------------------------------------------------- §7.6 test vectors, one by one


@pytest.mark.parametrize("value", ["11010519491231002X", "440524188001010014", "34052419800101001X"])
def test_vector_resident_id_valid(value: str) -> None:
    assert ids.is_valid_resident_id(value)
    assert ("resident_id", "high") in kinds(value)


def test_vector_resident_id_bad_check_is_medium() -> None:
    assert not ids.is_valid_resident_id("110105194912310021")
    assert kinds("110105194912310021") == [("resident_id", "medium")]


def test_vector_legacy_15_converts_and_is_medium() -> None:
    assert ids.legacy_to_18("110105491231002") == "11010519491231002X"
    assert kinds("110105491231002") == [("resident_id", "medium")]


@pytest.mark.parametrize("value", ["91350100M000100Y43", "91512081MA62K0260E", "91310115MA1K3AB001"])
def test_vector_uscc_valid(value: str) -> None:
    assert ids.is_valid_uscc(value)
    assert kinds(value) == [("uscc", "high")]


def test_vector_uscc_invalid_expected_check_3() -> None:
    assert not ids.is_valid_uscc("91350100M000100Y4Z")
    assert ids.uscc_check_char("91350100M000100Y4") == "3"
    assert kinds("91350100M000100Y4Z") == []


def test_vector_pudong_fixture_inner_org_code_check_passes() -> None:
    assert ids.uscc_org_code_valid("91310115MA1K3AB001")
    assert ids.uscc_org_code_valid("91350100M000100Y43")


def test_vector_luhn_valid_and_invalid() -> None:
    assert ids.luhn_valid("79927398713")
    assert ids.luhn_valid("6217000000000000004")
    assert not ids.luhn_valid("6217000000000000000")
    assert ids.luhn_check_digit("621700000000000000") == "4"
    assert ids.luhn_check_digit("7992739871") == "3"


def test_vector_19_digit_card_high_and_62_luhn_invalid_medium() -> None:
    assert kinds("6217000000000000004") == [("bank_card", "high")]
    assert kinds("6217000000000000000") == [("bank_card", "medium")]


# ---------------------------------------------------------------- algorithms


def test_resident_id_weights_are_powers_of_two_mod_11() -> None:
    assert tuple(pow(2, 18 - i, 11) for i in range(1, 18)) == ids._ID_WEIGHTS


def test_uscc_weights_are_powers_of_three_mod_31() -> None:
    assert ids._USCC_WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    assert len(ids.USCC_ALPHABET) == 31 and not set("IOZSV") & set(ids.USCC_ALPHABET)


def test_resident_id_needs_a_real_date_but_not_a_current_address_code() -> None:
    retired = "310108" + "19800101" + "001"  # 闸北 (retired code) is fine
    assert ids.is_valid_resident_id(retired + ids.resident_id_check_char(retired))
    bad_date = "110105" + "19490231" + "002"
    assert not ids.is_valid_resident_id(bad_date + ids.resident_id_check_char(bad_date))
    assert kinds(bad_date + ids.resident_id_check_char(bad_date)) == []


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_computed_check_char_always_validates_when_date_is_valid(body: str) -> None:
    value = body + ids.resident_id_check_char(body)
    assert ids.is_valid_resident_id(value) == ids.resident_id_date_valid(value)


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_check_digit_roundtrip(payload: str) -> None:
    assert ids.luhn_valid(payload + ids.luhn_check_digit(payload))


# ---------------------------------------------------------------- normalisation


def test_full_width_digits_and_lower_x_are_normalised() -> None:
    assert ids.normalise("１１０１０５１９４９１２３１００２ｘ") == "11010519491231002X"
    assert kinds("１１０１０５１９４９１２３１００２ｘ") == [("resident_id", "high")]
    assert kinds("11010519491231002x") == [("resident_id", "high")]


@pytest.mark.parametrize(
    "text",
    ["110105 19491231 002X", "110105-19491231-002X", "110105.19491231.002X", "身份证号11010519491231002X"],
)
def test_separators_inside_candidates_and_cjk_boundaries(text: str) -> None:
    assert ("resident_id", "high") in kinds(text)


@pytest.mark.parametrize(
    "text", ["A11010519491231002X", "911010519491231002X", "11010519491231002X7", "ID_11010519491231002XY"]
)
def test_number_inside_a_longer_alphanumeric_run_does_not_match(text: str) -> None:
    assert ("resident_id", "high") not in kinds(text)


def test_masked_value_never_shows_the_whole_identifier() -> None:
    for text in ["11010519491231002X", "91350100M000100Y43", "13800138000", "6217000000000000004"]:
        for f in ids.scan_text(f"value {text}"):
            assert text not in f.reason and text not in f.masked
            assert "*" in f.masked


# ---------------------------------------------------------------- phones


@pytest.mark.parametrize(
    "text",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "0086-13800138000",
        "8613800138000",
    ],
)
def test_mobile_formats(text: str) -> None:
    assert [k for k, _ in kinds(text)] == ["mobile"]


def test_mobile_context_words_raise_confidence() -> None:
    assert kinds("13800138000") == [("mobile", "medium")]
    assert kinds("手机 13800138000") == [("mobile", "high")]
    assert kinds("13800138000", context="contact_phone") == [("mobile", "high")]
    assert kinds("tel:13800138000") == [("mobile", "high")]
    assert kinds("hotel 13800138000") == [("mobile", "medium")]  # 'tel' inside 'hotel' is no context


def test_mobile_needs_second_digit_3_to_9_and_eleven_digits() -> None:
    assert kinds("12800138000") == []
    assert kinds("1380013800") == []


def test_decimal_fraction_is_not_a_phone_but_float_of_phone_is() -> None:
    assert kinds("0.13800138000") == []
    assert kinds("13800138000.0") == [("mobile", "medium")]
    assert kinds("13800138000.25") == []


def test_shanghai_landline() -> None:
    assert kinds("021-12345678") == [("landline", "medium")]
    assert kinds("+86 21 12345678") == [("landline", "medium")]
    assert kinds("2112345678") == []  # bare 10 digits, no prefix or context
    assert kinds("电话 21 12345678") == [("landline", "medium")]


# ---------------------------------------------------------------- bank cards


def test_bank_card_grouped_in_fours() -> None:
    assert kinds("6217 0000 0000 0000 004") == [("bank_card", "high")]


def test_other_luhn_valid_runs_are_low() -> None:
    payload = "301234567890"  # 13 digits with a check, prefix 3
    assert kinds(payload + ids.luhn_check_digit(payload)) == [("bank_card", "low")]


def test_short_lists_of_numbers_do_not_glue_into_cards() -> None:
    payload = "400012003400560"
    glued = payload + ids.luhn_check_digit(payload)
    spaced = " ".join([glued[:3], glued[3:6], glued[6:10], glued[10:]])
    assert kinds(spaced) == []


# ---------------------------------------------------------------- optional detectors


def test_plates_email_passport() -> None:
    assert kinds("沪A12345") == [("plate", "medium")]
    assert kinds("沪AD12345") == [("plate", "medium")]
    assert kinds("沪A·12345") == [("plate", "medium")]
    assert kinds("mail me: someone@example.com") == [("email", "medium")]
    assert kinds("E12345678") == [("passport", "low")]
    assert kinds("护照 E12345678") == [("passport", "medium")]
    assert kinds("EA1234567") == [("passport", "low")]


@pytest.mark.parametrize(
    "header",
    [
        "身份证号",
        "证件号码",
        "手机",
        "银行卡号",
        "姓名",
        "家庭地址",
        "id_number",
        "phone",
        "Mobile No",
        "email",
        "card_no",
        "name",
        "patient_name",
        "home_address",
        "passport",
    ],
)
def test_identifier_like_column_names(header: str) -> None:
    f = ids.scan_column_name(header)
    assert f is not None and f.kind == K.COLUMN_NAME


@pytest.mark.parametrize(
    "header",
    ["district_code", "station_name", "ent_name", "hotel_id", "n", "vat_paid_wan", "visitors", "mode"],
)
def test_ordinary_column_names_pass(header: str) -> None:
    assert ids.scan_column_name(header) is None


# ---------------------------------------------------------------- verdicts per tier


def finding(kind: K, sev: S, pi: bool = False) -> ids.Finding:
    return ids.Finding(kind, sev, "x", "d", pi_adjacent=pi)


@pytest.mark.parametrize(
    ("kind", "sev", "pi", "open_", "conditional", "restricted"),
    [
        (K.RESIDENT_ID, S.HIGH, False, "fail", "fail", "fail"),
        (K.RESIDENT_ID, S.MEDIUM, False, "warn", "fail", "fail"),
        (K.USCC, S.HIGH, False, "pass", "fail", "fail"),
        (K.USCC, S.HIGH, True, "warn", "fail", "fail"),
        (K.MOBILE, S.HIGH, False, "warn", "fail", "fail"),
        (K.MOBILE, S.MEDIUM, False, "warn", "fail", "fail"),
        (K.BANK_CARD, S.HIGH, False, "fail", "fail", "fail"),
        (K.BANK_CARD, S.MEDIUM, False, "warn", "fail", "fail"),
        (K.BANK_CARD, S.LOW, False, "warn", "warn", "warn"),
        (K.COLUMN_NAME, S.LOW, False, "warn", "warn", "warn"),
    ],
)
def test_gate_rules_per_tier(
    kind: K, sev: S, pi: bool, open_: str, conditional: str, restricted: str
) -> None:
    f = finding(kind, sev, pi)
    assert ids.verdict_for(f, Tier.OPEN) == Verdict(open_)
    assert ids.verdict_for(f, Tier.CONDITIONAL) == Verdict(conditional)
    assert ids.verdict_for(f, Tier.RESTRICTED) == Verdict(restricted)


def test_uscc_from_non_enterprise_conditional_data_is_a_warning() -> None:
    assert ids.verdict_for(finding(K.USCC, S.HIGH), Tier.RESTRICTED, enterprise_data=False) == Verdict.WARN
    assert (
        ids.verdict_for(finding(K.USCC, S.HIGH, True), Tier.RESTRICTED, enterprise_data=False) == Verdict.FAIL
    )


def test_92_code_is_marked_pi_adjacent() -> None:
    body = "92310115MA1K3AB00"
    code = body + ids.uscc_check_char(body)
    (f,) = ids.scan_text(code)
    assert f.kind == K.USCC and f.pi_adjacent and "natural person" in f.reason


@given(st.text(alphabet=st.sampled_from("0123456789Xx -.+@沪A手机１２ \n"), max_size=60))
def test_scanning_arbitrary_text_never_fails_and_never_echoes(text: str) -> None:
    for f in ids.scan_text(text):
        compact = text[f.start : f.end].replace(" ", "").replace("-", "").replace(".", "")
        if len(compact) > 6 and f.kind != K.EMAIL:
            assert compact.upper() not in f.reason
