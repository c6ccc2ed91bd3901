"""The label taxonomy: the shipped files, the validator, per-job and persistent labels."""
from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from rekolab.analysis.taxonomy import (
    CATEGORIES,
    COCO_CSV,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    PROMPT_TEMPLATES,
    TAXONOMY_CSV,
    Label,
    Taxonomy,
)

COCO80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
]


@pytest.fixture(scope="module")
def shipped() -> Taxonomy:
    return Taxonomy.load(include_user=False)


def write(path: Path, body: str) -> Path:
    path.write_text("name,parents,aliases,categories\n" + body, encoding="utf-8")
    return path


# -- the shipped files ------------------------------------------------------------------

def test_shipped_file_loads_and_is_big_enough(shipped):
    assert len(shipped) >= 600
    assert len(shipped.names) == len(shipped) == len(set(shipped.names))
    assert list(shipped) == shipped.names
    with open(TAXONOMY_CSV, newline="", encoding="utf-8") as f:
        file_order = [row["name"] for row in csv.DictReader(f)]
    assert shipped.names == file_order  # stable file order


def test_shipped_names_follow_rekognition_rules(shipped):
    pattern = re.compile(NAME_PATTERN)
    for name in shipped:
        assert pattern.fullmatch(name), name
        assert 0 < len(name) <= MAX_NAME_LENGTH, name
        assert name[0].isupper() or name[0].isdigit(), name  # Title Case
    for name in ["Car", "Vehicle", "Transportation", "Dog", "Canine", "Mammal", "Animal", "Pet",
                 "Person", "Bicycle", "Giraffe", "Zebra", "Horse", "Truck", "Bus"]:
        assert name in shipped


def test_expected_hierarchies(shipped):
    assert {"Vehicle", "Transportation"} <= set(shipped["Car"].parents)
    assert {"Animal", "Mammal", "Pet", "Canine"} <= set(shipped["Dog"].parents)
    assert shipped["Person"].parents == ()
    assert shipped["Car"].parents[0] == "Vehicle"  # nearest first
    assert isinstance(shipped["Car"], Label) and not shipped["Car"].custom


def test_ancestors_nearest_first_without_duplicates(shipped):
    for name in shipped:
        label = shipped[name]
        assert len(set(label.parents)) == len(label.parents), name
        assert name not in label.parents, name
        direct = shipped.direct_parents(name)
        # the direct parents come first, then their ancestors (breadth-first)
        assert label.parents[:len(direct)] == direct, name
        for parent in label.parents:
            assert parent in shipped
            assert set(shipped[parent].parents) <= set(label.parents), (name, parent)


def test_categories(shipped):
    used = Counter(c for name in shipped for c in shipped[name].categories)
    assert set(used) <= CATEGORIES
    assert len(used) >= 15
    assert len(CATEGORIES) == 41 and "Custom" in CATEGORIES
    assert "Custom" not in used
    assert all(shipped[name].categories for name in shipped)
    text = set(shipped.by_category("Text and Documents"))
    assert {"Text", "Document", "Page", "Book", "Poster", "Sign", "Newspaper", "Label"} <= text


def test_coco_map(shipped):
    mapping = shipped.coco_map()
    assert list(mapping) == COCO80
    for coco, name in mapping.items():
        assert name in shipped, (coco, name)
    assert mapping["person"] == "Person"
    assert mapping["tv"] == "TV"
    assert mapping["couch"] == "Couch"
    assert mapping["cell phone"] == "Cell Phone"
    assert mapping["hair drier"] == "Hair Dryer"
    assert mapping["sports ball"] == "Ball"
    assert mapping["potted plant"] == "Potted Plant"
    with open(COCO_CSV, newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["coco", "name"]


def test_children_and_descendants(shipped):
    assert "Car" in shipped.children("Vehicle")
    assert "Car" not in shipped.children("Transportation")
    assert shipped.descendants("Car") >= {"Sedan", "Taxi"}
    assert {"Car", "Sedan", "Truck"} <= shipped.descendants("Transportation")
    assert "Dog" in shipped.descendants("Animal")
    assert "Person" not in shipped.descendants("Animal")
    for name in shipped.descendants("Mammal"):
        assert "Mammal" in shipped[name].parents


def test_lookup(shipped):
    assert shipped["car"].name == "Car"
    assert "car" in shipped and "Not A Label" not in shipped and 3 not in shipped
    with pytest.raises(KeyError):
        shipped["Not A Label"]
    assert shipped.resolve("Automobile") == "Car"
    assert shipped.resolve("nothing like it") is None


# -- the validator ----------------------------------------------------------------------

def test_small_valid_file(tmp_path):
    tax = Taxonomy.load(write(tmp_path / "t.csv",
                              "A,,,Custom\nB,A,Bee,Animals and Pets\nC,B|A,,\nD,C|B,,\n"),
                        include_user=False)
    assert tax.names == ["A", "B", "C", "D"]
    assert tax["D"].parents == ("C", "B", "A")
    assert tax["C"].parents == ("B", "A")
    assert tax["B"].aliases == ("Bee",)
    assert tax.children("A") == ["B", "C"]
    assert tax.descendants("A") == {"B", "C", "D"}


@pytest.mark.parametrize("body, message", [
    ("A,,,Custom\n,A,,Custom\n", r"line 3: empty label name"),
    ("A,,,Custom\nB,,,Custom\nA,,,Custom\n", r"line 4 \(A\): duplicate name, already defined at .*line 2"),
    ("A,,,Custom\na,,,Custom\n", r"line 3 \(a\): duplicate name"),
    ("A,,,Custom\n" + "X" * 51 + ",,,Custom\n", r"line 3 \(X+\): name is 51 characters long"),
    ("A,,,Custom\nBad!Name,,,Custom\n", r"line 3 \(Bad!Name\): name does not match the pattern"),
    ("A,,,Custom\nB,Nope,,Custom\n", r"line 3 \(B\): unknown parent 'Nope'"),
    ("A,,,Custom\nB,A,,Cars\n", r"line 3 \(B\): unknown category 'Cars'"),
    ("A,,,Custom\nB,,a,Custom\n", r"line 3 \(B\): alias 'a' is the name of another label \('A'\)"),
    ("A,B,,Custom\nB,A,,Custom\n", r"cycle in parents: (A -> B -> A|B -> A -> B)"),
    ("A,A,,Custom\n", r"cycle in parents: A -> A"),
    ("R,,,Custom\nA,R|C,,Custom\nB,A,,Custom\nC,B,,Custom\n", r"cycle in parents: A -> C -> B -> A"),
])
def test_validator_errors(tmp_path, body, message):
    path = write(tmp_path / "bad.csv", body)
    with pytest.raises(ValueError, match=message) as info:
        Taxonomy.load(path, include_user=False)
    assert "bad.csv" in str(info.value) or "cycle" in str(info.value)


def test_missing_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,parents,aliases\nA,,\n")
    with pytest.raises(ValueError, match="missing column.*categories"):
        Taxonomy.load(path, include_user=False)


# -- per-job labels ---------------------------------------------------------------------

def test_with_labels_strings(shipped):
    tax = shipped.with_labels(["Hot Air Balloon Festival", "Car", "Robot Vacuum"])
    assert len(tax) == len(shipped) + 2
    assert len(shipped) == len(Taxonomy.load(include_user=False))  # original unchanged
    assert "Robot Vacuum" not in shipped
    new = tax["Robot Vacuum"]
    assert new == Label("Robot Vacuum", (), (), ("Custom",), custom=True)
    assert tax["Car"] == shipped["Car"]  # existing name kept as is
    assert tax.names[-2:] == ["Hot Air Balloon Festival", "Robot Vacuum"]
    with pytest.raises(ValueError, match="extra label 1.*does not match"):
        shipped.with_labels(["Caf\u00e9 & Bar"])
    with pytest.raises(ValueError, match="alias of 'Car'"):
        shipped.with_labels(["Automobile"])


def test_with_labels_mappings(shipped):
    tax = shipped.with_labels([
        {"Name": "Electric Scooter", "Parents": ["Kick Scooter"], "Aliases": ["E-Bike Scooter"],
         "Categories": ["Vehicles and Automotive"]},
        {"Name": "Corgi Puppy", "Parents": [{"Name": "Corgi"}, "Puppy"]},
    ])
    scooter = tax["Electric Scooter"]
    assert scooter.parents[:2] == ("Kick Scooter", "Vehicle")
    assert "Transportation" in scooter.parents
    assert scooter.categories == ("Vehicles and Automotive",) and scooter.custom
    assert tax["Corgi Puppy"].categories == ("Custom",)
    assert {"Dog", "Animal", "Mammal", "Pet"} <= set(tax["Corgi Puppy"].parents)
    assert "Electric Scooter" in tax.descendants("Vehicle")

    with pytest.raises(ValueError, match="unknown parent 'Nothing'"):
        shipped.with_labels([{"Name": "X", "Parents": ["Nothing"]}])
    with pytest.raises(ValueError, match="unknown category 'Vehicles'"):
        shipped.with_labels([{"Name": "X", "Categories": ["Vehicles"]}])
    with pytest.raises(ValueError, match="duplicate name"):
        shipped.with_labels([{"Name": "Dog"}])
    with pytest.raises(ValueError, match="alias 'Dog' is the name of another label"):
        shipped.with_labels([{"Name": "X", "Aliases": ["Dog"]}])
    with pytest.raises(ValueError, match="unknown key"):
        shipped.with_labels([{"Name": "X", "Parent": ["Dog"]}])


# -- persistent labels ------------------------------------------------------------------

def test_add_persistent(rekolab_home):
    tax = Taxonomy.load()
    label = tax.add_persistent("Delivery Robot", parents=["Robot"], aliases=["Sidewalk Robot"],
                               categories=["Technology and Computing"])
    assert label.custom and label.parents[0] == "Robot" and "Machine" in label.parents
    assert tax["Delivery Robot"] == label
    path = rekolab_home / "labels" / "custom.csv"
    assert path.exists()
    assert not list(path.parent.glob("*.tmp"))

    fresh = Taxonomy.load()
    assert fresh["Delivery Robot"] == label
    assert fresh.names[-1] == "Delivery Robot"
    assert "Delivery Robot" not in Taxonomy.load(include_user=False)

    # a second label, and an update of the first, keep the file consistent
    tax.add_persistent("Office Dog", parents=["Dog"])
    tax.add_persistent("Delivery Robot", parents=["Robot", "Vehicle"])
    fresh = Taxonomy.load()
    assert fresh["Office Dog"].categories == ("Custom",)
    assert "Vehicle" in fresh["Delivery Robot"].parents
    assert fresh["Delivery Robot"].aliases == ()
    assert [n for n in fresh if fresh[n].custom] == ["Office Dog", "Delivery Robot"]


def test_add_persistent_validates_before_writing(rekolab_home):
    tax = Taxonomy.load()
    with pytest.raises(ValueError, match="unknown parent 'Nope'"):
        tax.add_persistent("Thing", parents=["Nope"])
    with pytest.raises(ValueError, match="duplicate name"):
        tax.add_persistent("Dog")
    with pytest.raises(ValueError, match="unknown category"):
        tax.add_persistent("Thing", categories=["Stuff"])
    with pytest.raises(ValueError, match="does not match"):
        tax.add_persistent("Thing & Co")
    assert not (rekolab_home / "labels" / "custom.csv").exists()
    assert "Thing" not in tax


def test_user_file_errors_name_the_file(rekolab_home):
    path = rekolab_home / "labels" / "custom.csv"
    path.parent.mkdir(parents=True)
    write(path, "My Label,Not There,,Custom\n")
    with pytest.raises(ValueError, match=r"custom.csv line 2 \(My Label\): unknown parent"):
        Taxonomy.load()
    Taxonomy.load(include_user=False)  # the shipped file alone still loads


# -- prompts ----------------------------------------------------------------------------

def test_prompts(shipped):
    assert len(PROMPT_TEMPLATES) == 5
    prompts = shipped.prompts("Car")
    assert prompts[:5] == [
        "a photo of a car.",
        "a photo of the car.",
        "a video frame showing a car.",
        "a blurry photo of a car.",
        "a close-up photo of a car.",
    ]
    texts = ["car"] + [a.lower() for a in shipped["Car"].aliases]
    assert prompts == [t.format(x) for x in texts for t in PROMPT_TEMPLATES]
    assert "a photo of a automobile." in prompts
    assert len(set(prompts)) == len(prompts)
    assert shipped.prompts("Person")[0] == "a photo of a person."
    custom = shipped.with_labels(["Robot Vacuum"])
    assert custom.prompts("Robot Vacuum") == [t.format("robot vacuum") for t in PROMPT_TEMPLATES]
    # every template is documented in the module docstring
    import rekolab.analysis.taxonomy as module
    for template in PROMPT_TEMPLATES:
        assert template in module.__doc__
