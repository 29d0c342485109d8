import pytest

from ingestion.parsing.unstructured_parser import languages_of

pytestmark = pytest.mark.unit


def test_plain_english_skips_detection() -> None:
    assert languages_of("The refund is issued to the original payment method within five days of the request.") == [
        "eng"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Die Rückerstattung erfolgt innerhalb von fünf Tagen auf das ursprüngliche Zahlungsmittel.",
        "Le remboursement est effectué sous cinq jours sur le moyen de paiement d'origine.",
        "退款将在五天内退回原支付方式。",
        "short",
    ],
)
def test_anything_else_is_detected_by_unstructured(text: str) -> None:
    assert languages_of(text) == ["auto"]
