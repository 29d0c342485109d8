"""A tiny BEIR dataset whose answers a person can check by eye: 20 documents on unrelated topics,
6 queries, each aimed at one obvious document (q3 also has a second, partly relevant one)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

DOCS = {
    "d01": ("Photosynthesis", "Plants use chlorophyll to capture sunlight and turn carbon dioxide and water "
            "into glucose and oxygen during photosynthesis in their leaves."),
    "d02": ("Volcanoes", "A volcano erupts when magma rises through the crust; lava, ash and volcanic gas "
            "pour out during the eruption."),
    "d03": ("Emperor penguins", "Emperor penguins breed in large colonies on the Antarctic sea ice and huddle "
            "together through the polar winter."),
    "d04": ("Polar wildlife", "Seals, whales and penguins are among the animals adapted to the cold Antarctic "
            "and Arctic oceans."),
    "d05": ("Sourdough", "Sourdough bread rises through slow fermentation by wild yeast and lactic acid "
            "bacteria in a flour and water starter."),
    "d06": ("Black holes", "A black hole is a region where gravity is so strong that nothing, not even light, "
            "escapes once it crosses the event horizon."),
    "d07": ("Castle sieges", "Medieval armies besieged castles with catapults, trebuchets and siege towers, "
            "while defenders held the walls and the moat."),
    "d08": ("Tax returns", "File the annual income tax return before the deadline and keep receipts for "
            "deductible expenses."),
    "d09": ("Jazz", "Jazz musicians improvise over chord changes; swing rhythm and blue notes shaped the genre."),
    "d10": ("Chess openings", "The Sicilian Defence and the Queen's Gambit are popular chess openings."),
    "d11": ("Coffee roasting", "Roasting green coffee beans develops aroma through the Maillard reaction."),
    "d12": ("Marathon training", "Marathon runners build endurance with long slow runs and tempo sessions."),
    "d13": ("Tides", "Ocean tides are driven by the gravitational pull of the moon and the sun."),
    "d14": ("Bicycle repair", "Fix a flat bicycle tyre by patching the inner tube and checking the rim tape."),
    "d15": ("Origami", "Origami folds a single square sheet of paper into cranes, boxes and flowers."),
    "d16": ("Glaciers", "Glaciers carve valleys as compacted snow turns to ice and slowly flows downhill."),
    "d17": ("Honeybees", "Honeybees communicate the location of flowers with a waggle dance in the hive."),
    "d18": ("Password hygiene", "Use a password manager and unique passwords with two factor authentication."),
    "d19": ("Roman roads", "Roman engineers built straight roads of layered stone across the empire."),
    "d20": ("Tea ceremony", "The Japanese tea ceremony prepares powdered matcha green tea with ritual care."),
}
QUERIES = {
    "q1": "how do plants use chlorophyll and sunlight in photosynthesis",
    "q2": "volcano eruption magma and lava",
    "q3": "emperor penguins colonies on antarctic ice",
    "q4": "sourdough bread fermentation with wild yeast",
    "q5": "black hole event horizon gravity",
    "q6": "medieval castle siege with catapults",
}
QRELS = {"q1": {"d01": 1}, "q2": {"d02": 1}, "q3": {"d03": 2, "d04": 1}, "q4": {"d05": 1}, "q5": {"d06": 1},
         "q6": {"d07": 1}}


def files() -> dict[str, bytes]:
    corpus = "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in DOCS.items())
    queries = "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items())
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, rels in QRELS.items() for d, g in rels.items()
    )
    return {"corpus.jsonl": corpus.encode(), "queries.jsonl": queries.encode(), "qrels/test.tsv": qrels.encode()}


def write(root: Path) -> Path:
    for name, data in files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def tar_gz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files().items():
            info = tarfile.TarInfo(f"tiny/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
