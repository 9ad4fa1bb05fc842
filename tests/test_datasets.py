"""The ``--data`` forms (spixel.data.datasets) and their annotation readers, on tiny datasets built in tmp_path."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spixel.data import SyntheticDataset, sample, sample_names
from spixel.data.annotations import (
    read_csv_boxes,
    read_mask,
    read_voc_xml,
    resolve_label,
    wordnet_id,
    wordnet_index,
)
from spixel.data.datasets import open_dataset
from spixel.errors import BadImageError, BadParameterError, SpixelError, UnknownNameError
from spixel.models import imagenet_labels
from spixel.registry import DATASETS

TABBY, EGYPTIAN_CAT, ESPRESSO = 281, 285, 967  # ImageNet-1k indices (torchvision's category list)
VOC_LABELS = ["background", "cat", "dog", "person"]  # a model whose label texts are VOC class names


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Three bundled photos shrunk to 80 px wide (sizes: chelsea 80×53, coffee 80×53, astronaut 80×80)."""
    out = {}
    for name in ("chelsea", "coffee", "astronaut"):
        img = Image.fromarray(sample(name).image)
        out[name] = np.asarray(img.resize((80, round(80 * img.height / img.width))))
    return out


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return imagenet_labels()


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def _sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _voc_xml(path: Path, size: tuple[int, int] | None, objects: list[tuple[str, tuple[int, ...], int]]) -> None:
    parts = ["<annotation><folder>VOC</folder><filename>x.jpg</filename>"]
    if size:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, (x0, y0, x1, y1), diff in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{diff}</difficult>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts) + "</annotation>\n")


def _same(a, b) -> bool:
    """Two items carry the same data (``Item`` compares by identity)."""
    fields = ("item_id", "labels", "label_names", "boxes", "box_labels", "file_hash", "error")
    arrays = all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
        for x, y in ((a.image, b.image), (a.mask, b.mask))
    )
    return arrays and all(getattr(a, f) == getattr(b, f) for f in fields)


# ---------------------------------------------------------------------------------------------------- readers
def test_wordnet_ids_follow_timm_imagenet_order(labels):
    assert wordnet_index("n02123045") == TABBY and labels[TABBY] == "tabby"
    assert wordnet_index("n07920052") == ESPRESSO and labels[ESPRESSO] == "espresso"
    assert wordnet_index("n01440764") == 0 and labels[0] == "tench"
    assert wordnet_id(TABBY) == "n02123045"
    assert all(wordnet_index(wordnet_id(k)) == k for k in (0, 500, 999))
    with pytest.raises(BadParameterError, match="not one of the 1000"):
        wordnet_index("n99999999")
    with pytest.raises(BadParameterError):
        wordnet_id(1000)


def test_resolve_label_index_wnid_and_text(labels):
    assert resolve_label("281", labels, 1000) == TABBY
    assert resolve_label(" 7 ", None, 10) == 7
    assert resolve_label("n02123045", labels, 1000) == TABBY
    assert resolve_label("n02123045", None, None) == TABBY  # unknown model: WordNet ids mean ImageNet-1k
    assert resolve_label("Tabby", labels, None) == TABBY
    assert resolve_label("great_white  Shark", labels, 1000) == 2
    assert resolve_label("egyptian_cat", labels) == EGYPTIAN_CAT
    bad = [
        ("n02123045", None, 10, "model has 10 classes"),
        ("1000", labels, 1000, "out of range"),
        ("tabbby", labels, 1000, "did you mean 'tabby'"),
        ("tabby", None, None, "needs the model's label names"),
        ("", labels, 1000, "empty"),
    ]
    for token, names, n, msg in bad:
        with pytest.raises(BadParameterError, match=msg) as e:
            resolve_label(token, names, n)
        assert "\n" not in str(e.value)


def test_read_voc_xml_converts_to_zero_based_exclusive(tmp_path):
    p = tmp_path / "000005.xml"
    _voc_xml(p, (500, 375), [("chair", (263, 211, 324, 339), 0), ("chair", (5, 244, 67, 374), 1)])
    size, objs = read_voc_xml(p)
    assert size == (500, 375)
    assert [(o.name, o.box, o.difficult) for o in objs] == [
        ("chair", (262, 210, 324, 339), False),  # 1-based inclusive 263..324 → 0-based 262, exclusive end 324
        ("chair", (4, 243, 67, 374), True),
    ]
    _voc_xml(p, None, [("n02123045", (1, 1, 10, 10), 0)])
    assert read_voc_xml(p) == (None, [("n02123045", (0, 0, 10, 10), False)])
    p.write_text("<annotation><object><name>x</name></object>")
    with pytest.raises(BadParameterError, match="not a readable XML"):
        read_voc_xml(p)
    _voc_xml(p, None, [("cat", (1, "a", 3, 4), 0)])  # type: ignore[list-item]
    with pytest.raises(BadParameterError, match="not a number"):
        read_voc_xml(p)


def test_read_csv_boxes(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("path,label,x0,y0,x1,y1\na.jpg,tabby,1,2,30,40\na.jpg,,5,6,7,8\nsub\\b.png,281,,,,\nc.jpg\n")
    assert read_csv_boxes(p) == [
        ("a.jpg", "tabby", (1, 2, 30, 40)),
        ("a.jpg", None, (5, 6, 7, 8)),
        ("sub/b.png", "281", None),
        ("c.jpg", None, None),
    ]
    p.write_text("a.jpg,1,2,3,4,5\n")  # no header
    assert read_csv_boxes(p) == [("a.jpg", "1", (2, 3, 4, 5))]
    p.write_text("a.jpg,1,2,3,4,5\nb.jpg,1,2,3\n")
    with pytest.raises(BadParameterError, match=r"b.csv:2: a box needs four numbers"):
        read_csv_boxes(p)


def test_read_mask_binary_and_palette(tmp_path):
    idx = np.zeros((6, 8), np.uint8)
    idx[1:3, 2:5] = 8  # VOC "cat"
    idx[3, :] = 255  # void boundary
    idx[5, 7] = 15  # VOC "person"
    pal = Image.frombytes("P", (8, 6), idx.tobytes())
    pal.putpalette([0, 0, 0, 128, 0, 0] + [64] * (254 * 3))
    pal.save(tmp_path / "pal.png")
    want = np.zeros((6, 8), bool)
    want[1:3, 2:5] = True
    want[5, 7] = True
    got = read_mask(tmp_path / "pal.png")
    assert got.dtype == bool and np.array_equal(got, want)
    for scale in (1, 255):
        Image.fromarray((want * scale).astype(np.uint8)).save(tmp_path / "bin.png")
        assert np.array_equal(read_mask(tmp_path / "bin.png"), want)
    (tmp_path / "bad.png").write_text("not a png")
    with pytest.raises(BadImageError):
        read_mask(tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------------------- folder
def test_folder_recursive_sorted_and_bad_files_fail(tmp_path, photos):
    root = tmp_path / "imgs"
    _write(root / "b.jpg", photos["chelsea"])
    _write(root / "a" / "z.PNG", photos["coffee"])
    _write(root / "a" / "deep" / "c.jpeg", photos["astronaut"])
    (root / "notes.txt").write_text("ignored")
    _write(root / ".hidden.jpg", photos["coffee"])
    good = (root / "b.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "text.jpg").write_text("this is not an image\n")
    _write(root / "tiny.png", photos["coffee"][:4, :4])

    ds = open_dataset(str(root))  # a bare directory = folder:DIR
    assert ds.spec == str(root)
    want = ["a/deep/c.jpeg", "a/z.PNG", "b.jpg", "text.jpg", "tiny.png", "truncated.jpg"]
    assert ds.ids() == want and len(ds) == 6
    items = [ds[i] for i in range(len(ds))]
    assert [it.item_id for it in items] == want
    ok = {it.item_id: it for it in items if it.ok}
    assert sorted(ok) == ["a/deep/c.jpeg", "a/z.PNG", "b.jpg"]
    assert ok["a/z.PNG"].image.shape == (53, 80, 3) and ok["a/z.PNG"].image.dtype == np.uint8
    assert np.array_equal(ok["a/z.PNG"].image, photos["coffee"])  # PNG: lossless
    assert ok["b.jpg"].file_hash == _sha16(root / "b.jpg")
    assert ok["b.jpg"].labels == () and ok["b.jpg"].boxes == () and ok["b.jpg"].mask is None
    bad = {it.item_id: it.error for it in items if not it.ok}
    assert "damaged or truncated" in bad["truncated.jpg"]
    assert "not an image file" in bad["text.jpg"]
    assert "at least 8×8" in bad["tiny.png"]
    for reason in bad.values():
        assert "\n" not in reason and str(tmp_path) not in reason
    assert ds[ds.ids().index("text.jpg")].file_hash == _sha16(root / "text.jpg")
    assert "6 images" in ds.describe() and "\n" not in ds.describe()


def test_folder_imagefolder_labels(tmp_path, photos, labels):
    root = tmp_path / "train"
    _write(root / "n02123045" / "a.jpg", photos["chelsea"])
    _write(root / "967" / "b.png", photos["coffee"])
    _write(root / "Egyptian_cat" / "c.jpg", photos["chelsea"])
    _write(root / "not_a_class" / "d.jpg", photos["astronaut"])

    ds = open_dataset(f"folder:{root}", labels=labels, num_classes=1000)
    got = {it.item_id: it for it in (ds[i] for i in range(len(ds)))}
    assert got["n02123045/a.jpg"].labels == (TABBY,)
    assert got["n02123045/a.jpg"].label_names == ("n02123045",)
    assert got["967/b.png"].labels == (ESPRESSO,)
    assert got["Egyptian_cat/c.jpg"].labels == (EGYPTIAN_CAT,)
    err = got["not_a_class/d.jpg"].error
    assert err is not None and "not_a_class" in err and "classes=none" in err

    no_model = open_dataset(f"folder:{root}")  # indices and WordNet ids still resolve, texts do not
    assert no_model[no_model.ids().index("n02123045/a.jpg")].labels == (TABBY,)
    assert not no_model[no_model.ids().index("Egyptian_cat/c.jpg")].ok

    plain = open_dataset(f"folder:{root}?classes=none", labels=labels)
    assert all(plain[i].ok and plain[i].labels == () for i in range(len(plain)))

    trips = tmp_path / "trips"  # sub-folders that name no class: just a tree of photos
    _write(trips / "holiday" / "a.jpg", photos["chelsea"])
    _write(trips / "home" / "b.jpg", photos["coffee"])
    ds = open_dataset(str(trips), labels=labels)
    assert [ds[i].labels for i in range(2)] == [(), ()] and all(ds[i].ok for i in range(2))


# ---------------------------------------------------------------------------------------------------- voc
@pytest.fixture
def voc(tmp_path, photos) -> Path:
    """VOC2007-style folder: 3 images (000001 80×53, 000002 80×53, 000003 80×80), a test split of 2, one mask."""
    root = tmp_path / "VOC2007"
    _write(root / "JPEGImages" / "000001.jpg", photos["chelsea"])
    _write(root / "JPEGImages" / "000002.jpg", photos["coffee"])
    _write(root / "JPEGImages" / "000003.jpg", photos["astronaut"])
    ann = root / "Annotations"
    _voc_xml(ann / "000001.xml", (80, 53), [("cat", (1, 1, 60, 53), 0), ("dog", (61, 10, 80, 40), 1)])
    _voc_xml(ann / "000002.xml", (80, 53), [("person", (10, 5, 20, 50), 0), ("cat", (30, 30, 35, 35), 0)])
    _voc_xml(ann / "000003.xml", (80, 80), [("person", (1, 1, 81, 40), 0)])  # xmax 81 > width 80
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("000003\n000001\n")
    (root / "ImageSets" / "Main" / "cat_train.txt").write_text("000001  1\n000002  0\n000003 -1\n")
    seg = np.zeros((53, 80), np.uint8)
    seg[:40, :50] = 8
    seg[40, :] = 255
    m = Image.frombytes("P", (80, 53), seg.tobytes())
    m.putpalette([0, 0, 0] + [128, 0, 0] * 255)
    (root / "SegmentationClass").mkdir()
    m.save(root / "SegmentationClass" / "000001.png")
    return root


def test_voc_boxes_labels_difficult_and_masks(voc):
    ds = open_dataset(f"voc:{voc}", labels=VOC_LABELS)
    assert ds.ids() == ["JPEGImages/000001.jpg", "JPEGImages/000002.jpg", "JPEGImages/000003.jpg"]
    a, b, c = (ds[i] for i in range(3))
    assert a.boxes == ((0, 0, 60, 53),) and a.labels == (1,) and a.label_names == ("cat",)  # dog is difficult
    assert a.box_labels == (1,)
    assert a.mask is not None and a.mask.shape == (53, 80) and a.mask.sum() == 40 * 50
    assert b.boxes == ((9, 4, 20, 50), (29, 29, 35, 35)) and b.labels == (3, 1) and b.box_labels == (3, 1)
    assert b.mask is None and b.file_hash == _sha16(voc / "JPEGImages" / "000002.jpg")
    assert not c.ok and "outside the 80×80 image" in c.error

    hard_ds = open_dataset(f"voc:{voc}?difficult=true", labels=VOC_LABELS)
    assert hard_ds.fingerprint() != ds.fingerprint()
    hard = hard_ds[0]
    assert hard.boxes == ((0, 0, 60, 53), (60, 9, 80, 40)) and hard.labels == (1, 2)

    imagenet_model = open_dataset(f"voc:{voc}", labels=imagenet_labels(), num_classes=1000)[1]
    assert imagenet_model.ok and imagenet_model.labels == () and imagenet_model.box_labels == (None, None)
    assert imagenet_model.label_names == ("person", "cat")


def test_voc_split_files(voc):
    ds = open_dataset(f"voc:{voc}?split=test")
    assert ds.ids() == ["JPEGImages/000001.jpg", "JPEGImages/000003.jpg"]
    assert open_dataset(f"voc:{voc}?split=cat_train").ids() == ["JPEGImages/000001.jpg", "JPEGImages/000002.jpg"]
    with pytest.raises(BadParameterError, match=r"no split file ImageSets/Main/val.txt.*splits: test"):
        open_dataset(f"voc:{voc}?split=val")
    (voc / "Annotations" / "000003.xml").unlink()
    assert "no annotation Annotations/000003.xml" in ds[1].error
    os.remove(voc / "JPEGImages" / "000001.jpg")
    assert "no such image file" in ds[0].error


# ---------------------------------------------------------------------------------------------------- imagenet
def test_imagenet_wnid_boxes(tmp_path, photos, labels):
    val = tmp_path / "val"
    _write(val / "ILSVRC2012_val_00000001.JPEG", photos["chelsea"])
    _write(val / "ILSVRC2012_val_00000002.JPEG", photos["coffee"])
    _write(val / "ILSVRC2012_val_00000003.JPEG", photos["astronaut"])
    _write(val / "ILSVRC2012_val_00000004.JPEG", photos["coffee"])
    boxes = tmp_path / "val_boxes"
    _voc_xml(boxes / "ILSVRC2012_val_00000001.xml", (80, 53), [("n02123045", (5, 3, 70, 53), 0)])
    two = [("n07920052", (20, 10, 60, 50), 0), ("n07920052", (1, 1, 10, 10), 0), ("n02123045", (2, 2, 4, 4), 0)]
    _voc_xml(boxes / "ILSVRC2012_val_00000002.xml", (80, 53), two)
    _voc_xml(boxes / "ILSVRC2012_val_00000003.xml", (80, 80), [("n99999999", (1, 1, 8, 8), 0)])

    ds = open_dataset(f"imagenet:{val}?boxes={boxes}", labels=labels, num_classes=1000)
    assert ds.ids() == [f"ILSVRC2012_val_0000000{k}.JPEG" for k in (1, 2, 3, 4)]
    a, b, c, d = (ds[i] for i in range(4))
    assert a.labels == (TABBY,) and a.boxes == ((4, 2, 70, 53),) and a.label_names == ("n02123045",)
    assert b.labels == (ESPRESSO, TABBY) and b.box_labels == (ESPRESSO, ESPRESSO, TABBY)
    assert b.boxes == ((19, 9, 60, 50), (0, 0, 10, 10), (1, 1, 4, 4))
    assert b.boxes_for(TABBY) == [(1, 1, 4, 4)]
    assert not c.ok and "n99999999" in c.error
    assert d.ok and d.boxes == () and d.labels == ()  # no XML: no boxes, not an error

    for f in boxes.iterdir():  # the same XML next to the images
        f.rename(val / f.name)
    same = open_dataset(f"imagenet:{val}", labels=labels)
    assert same.ids() == ds.ids() and same[1].boxes == b.boxes

    small = open_dataset(f"imagenet:{val}", num_classes=10)[0]  # not an ImageNet-1k model
    assert not small.ok and "model has 10 classes" in small.error


# ---------------------------------------------------------------------------------------------------- csv
def test_csv_several_boxes_and_labels(tmp_path, photos, labels):
    root = tmp_path / "set"
    _write(root / "cat.jpg", photos["chelsea"])
    _write(root / "sub" / "coffee.png", photos["coffee"])
    _write(root / "astro.jpg", photos["astronaut"])
    _write(root / "big.png", np.zeros((20, 4100, 3), np.uint8))  # load_image shrinks it to 4096 wide
    (root / "boxes.csv").write_text(
        "path,label,x0,y0,x1,y1\n"
        "cat.jpg,tabby,0,0,40,30\n"
        "cat.jpg,n02123045,40,20,80,53\n"
        "sub/coffee.png,967,,,,\n"
        "sub/coffee.png,,10,10,20,20\n"
        "astro.jpg,zebra crossing,1,1,5,5\n"
        "missing.jpg,1,,,,\n"
        "outside.jpg,1,0,0,81,20\n"
        "big.png,,0,0,4100,20\n"
    )
    _write(root / "outside.jpg", photos["chelsea"])
    ds = open_dataset(f"csv:{root / 'boxes.csv'}", labels=labels)
    assert ds.ids() == ["astro.jpg", "big.png", "cat.jpg", "missing.jpg", "outside.jpg", "sub/coffee.png"]
    got = {it.item_id: it for it in (ds[i] for i in range(len(ds)))}
    cat = got["cat.jpg"]
    assert cat.labels == (TABBY,) and cat.boxes == ((0, 0, 40, 30), (40, 20, 80, 53))
    assert cat.box_labels == (TABBY, TABBY) and cat.label_names == ("tabby", "n02123045")
    cof = got["sub/coffee.png"]
    assert cof.labels == (ESPRESSO,) and cof.boxes == ((10, 10, 20, 20),) and cof.box_labels == (None,)
    assert "zebra crossing" in got["astro.jpg"].error
    assert "no such image file" in got["missing.jpg"].error and got["missing.jpg"].file_hash is None
    assert "outside the 80×53 image" in got["outside.jpg"].error
    assert got["outside.jpg"].file_hash == _sha16(root / "outside.jpg")
    big = got["big.png"]
    assert big.image.shape == (20, 4096, 3) and big.boxes == ((0, 0, 4096, 20),)

    with pytest.raises(BadParameterError, match="no such file"):
        open_dataset(f"csv:{root / 'nope.csv'}")


# ---------------------------------------------------------------------------------------------------- masks
def test_masks_pairs_and_missing_masks(tmp_path, photos):
    root = tmp_path / "seg"
    _write(root / "images" / "a.jpg", photos["chelsea"])
    _write(root / "images" / "b" / "c.jpg", photos["coffee"])
    _write(root / "images" / "d.jpg", photos["astronaut"])
    m = np.zeros((53, 80), np.uint8)
    m[10:20, 30:50] = 255
    _write(root / "masks" / "a.png", m)
    _write(root / "masks" / "d.png", m)  # astronaut is 80×80: wrong size
    ds = open_dataset(f"masks:{root}")
    assert ds.ids() == ["images/a.jpg", "images/b/c.jpg", "images/d.jpg"]
    a, c, d = (ds[i] for i in range(3))
    assert a.mask is not None and a.mask.dtype == bool and a.mask.shape == a.image.shape[:2]
    assert a.mask.sum() == 10 * 20 and a.mask[10:20, 30:50].all()
    assert c.ok and c.mask is None
    assert not d.ok and "mask is 80×53 pixels but the image is 80×80" in d.error

    (root / "images").rename(root / "img")
    (root / "masks").rename(root / "gt")
    renamed = open_dataset(f"masks:{root}?images=img&masks=gt")
    assert renamed.ids()[0] == "img/a.jpg" and renamed[0].mask.sum() == 200
    with pytest.raises(BadParameterError, match="no images/ folder"):
        open_dataset(f"masks:{root}")


# ---------------------------------------------------------------------------------------------------- built-ins
def test_photos_and_synthetic():
    ds = open_dataset("photos:chelsea,coffee")
    assert ds.ids() == ["chelsea", "coffee"] and open_dataset("photos").ids() == sample_names()
    it, ref = ds[0], sample("chelsea")
    assert it.item_id == "chelsea" and it.labels == ref.classes and it.boxes == (ref.box,) and it.file_hash is None
    assert np.array_equal(it.image, ref.image) and it.label_names[0] == "n02123045"
    assert open_dataset("photos:chelsea", num_classes=7)[0].labels == ()

    syn = open_dataset("synthetic:3?size=32&seed=1")
    assert len(syn) == 3 and syn.ids() == ["synthetic/000000", "synthetic/000001", "synthetic/000002"]
    ref2 = SyntheticDataset(3, size=32, seed=1)[2]
    it = syn[2]
    assert it.item_id == "synthetic/000002" and it.labels == (ref2.label,) and it.boxes == (ref2.box,)
    assert np.array_equal(it.image, ref2.image) and np.array_equal(it.mask, ref2.mask)
    assert len(open_dataset("synthetic")) == 100
    assert syn.fingerprint() != open_dataset("synthetic:3?size=32&seed=2").fingerprint()


# ---------------------------------------------------------------------------------------------------- cross-cutting
def test_fingerprint_tracks_files(tmp_path, photos):
    root = tmp_path / "f"
    _write(root / "a.png", photos["chelsea"])
    _write(root / "b.png", photos["coffee"])
    f0 = open_dataset(str(root)).fingerprint()
    assert len(f0) == 16 and open_dataset(str(root)).fingerprint() == f0
    _write(root / "b.png", photos["astronaut"])
    os.utime(root / "b.png", ns=(1, 1))
    f1 = open_dataset(str(root)).fingerprint()
    assert f1 != f0
    _write(root / "c.png", photos["coffee"])
    assert open_dataset(str(root)).fingerprint() not in (f0, f1)
    (root / "b.csv").write_text("a.png,1,0,0,5,5\n")
    c0 = open_dataset(f"csv:{root / 'b.csv'}").fingerprint()
    (root / "b.csv").write_text("a.png,2,0,0,5,5\n")  # same size: the mtime tells
    os.utime(root / "b.csv", ns=(2, 2))
    assert open_dataset(f"csv:{root / 'b.csv'}").fingerprint() != c0


def test_dataloader_workers_and_pickle(voc, tmp_path):
    ds = open_dataset(f"voc:{voc}", labels=VOC_LABELS)
    direct = [ds[i] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list)
    through = [it for batch in loader for it in batch]
    assert len(through) == 3 and all(_same(a, b) for a, b in zip(direct, through, strict=True))
    for spec in (f"voc:{voc}", "synthetic:2", "photos:coffee"):
        d = open_dataset(spec)
        again = pickle.loads(pickle.dumps(d))
        assert again.ids() == d.ids() and _same(again[0], d[0]) and again.spec == spec


def test_bad_specs_say_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        ("vocc:/x", UnknownNameError, "Did you mean 'voc'"),
        ("nonsense", UnknownNameError, "Choose one of"),
        (str(tmp_path / "nowhere"), BadParameterError, "no such directory"),
        (f"folder:{tmp_path / 'nowhere'}", BadParameterError, "no such directory"),
        (f"voc:{tmp_path / 'empty'}", BadParameterError, "no JPEGImages/ folder"),
        (str(tmp_path / "empty"), BadParameterError, "no images found"),
        ("synthetic:3?colour=red", BadParameterError, "unknown option 'colour'"),
        ("synthetic:3?size=big", BadParameterError, "option size=big"),
        ("synthetic:3?seed=1&seed=2", BadParameterError, "given twice"),
        ("synthetic:-3", BadParameterError, "positive integer"),
        (f"voc:{tmp_path}?difficult=maybe", BadParameterError, "true or false"),
        ("photos:unicorn", BadParameterError, "unknown photo"),
        ("", BadParameterError, "empty"),
    ]
    for spec, kind, msg in cases:
        with pytest.raises(kind, match=msg) as e:
            open_dataset(spec)
        assert isinstance(e.value, SpixelError) and "\n" not in str(e.value)


def test_every_form_is_registered_with_an_example():
    assert {"folder", "voc", "imagenet", "csv", "masks", "photos", "synthetic"} <= set(DATASETS.names())
    for entry in DATASETS:
        assert entry.description and entry.info["example"].startswith(entry.name)
