"""The bad inputs of `test_bad_inputs.py`: real files that are wrong in one way each, and the table of cases (job,
parameters, what the answer must name). Every case fails before or during its job without touching its inputs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from osgeo import gdal

from scenes import NORTH_UP, labelled_raster, rect, stripe_polygons, write_polygons
from test_engine_io import WL20, make_tif, spectra

LONG = "/tmp/" + "x" * 5000 + ".tif"  # a 5 KB path: quoted shortened, never whole


def envi(path: Path, wavelengths=None, fwhm=None) -> Path:
    """A 20-band ENVI raster whose header lists the given wavelengths and FWHM (wrong ones, for the tests)."""
    data = spectra(20, 16, 16)
    ds = gdal.GetDriverByName("ENVI").Create(str(path), 16, 16, 20, gdal.GDT_Float32)
    ds.SetGeoTransform(NORTH_UP)
    for b in range(20):
        ds.GetRasterBand(b + 1).WriteArray(data[b])
    ds = None
    hdr = path.with_suffix(".hdr")
    lines = [ln for ln in hdr.read_text().splitlines() if not ln.lower().startswith(("wavelength", "fwhm"))]
    if wavelengths is not None:
        lines += ["wavelength units = Nanometers", f"wavelength = {{{', '.join(map(str, wavelengths))}}}"]
    if fwhm is not None:
        lines.append(f"fwhm = {{{', '.join(map(str, fwhm))}}}")
    hdr.write_text("\n".join(lines) + "\n")
    return path


def make_inputs(d: Path) -> dict[str, str]:
    """Every input file the cases use, in folder `d` (checksummed before and after each case)."""
    d.mkdir(parents=True, exist_ok=True)
    f = {}
    f["scene"] = str(labelled_raster(d / "scene.tif")[0])
    water, truth = labelled_raster(d / "water_nodata.tif")
    ds = gdal.Open(str(water), gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):  # the water stripe is no-data: its polygons label nothing
        band = ds.GetRasterBand(b)
        band.WriteArray(np.where(truth == truth.max(), np.nan, band.ReadAsArray()).astype(np.float32))
    ds = None
    f["water_nodata"] = str(water)
    f["other_place"] = str(labelled_raster(d / "elsewhere.tif", gt=(100000.0, 2.0, 0.0, 100000.0, 0.0, -2.0))[0])
    f["polygons"] = str(write_polygons(d / "train.gpkg", stripe_polygons()))
    f["empty"] = str(write_polygons(d / "empty.gpkg", []))
    f["wrong_crs"] = str(write_polygons(d / "wrongcrs.geojson", stripe_polygons(), epsg=4326,
                                        driver="GeoJSON"))  # the scene's UTM metres in a layer said to be in degrees
    f["one_class"] = str(write_polygons(d / "one.gpkg", [("water", rect(1, 1, 10, 10)),
                                                         ("water", rect(1, 20, 10, 30))]))
    f["no_class"] = str(write_polygons(d / "noclass.gpkg", [(None, rect(1, 1, 10, 10)), ("sand", rect(34, 1, 44, 9))]))
    f["spellings"] = str(write_polygons(d / "spell.gpkg", [("Sand", rect(34, 1, 44, 9)),
                                                            ("sand ", rect(34, 20, 44, 29)),
                                                            ("water", rect(1, 1, 10, 10))]))
    f["outside"] = str(write_polygons(d / "outside.gpkg", [("a", rect(500, 500, 510, 510)),
                                                          ("b", rect(600, 600, 610, 610))]))
    f["no_wl"] = str(make_tif(d / "nowl.tif", spectra(7, 16, 16), gt=NORTH_UP))
    f["few_wl"] = str(envi(d / "fewwl.img", wavelengths=WL20[:15]))
    f["dup_wl"] = str(envi(d / "dupwl.img", wavelengths=WL20[:10] + WL20[:10], fwhm=[10] * 20))
    f["neg_fwhm"] = str(envi(d / "negfwhm.img", wavelengths=WL20, fwhm=[10] * 19 + [-5]))
    f["zero_fwhm"] = str(envi(d / "zerofwhm.img", wavelengths=WL20, fwhm=[0] * 20))
    (d / "notraster.tif").write_text("this is text, not a raster")
    f["not_raster"] = str(d / "notraster.tif")
    trunc = envi(d / "trunc.img", wavelengths=WL20, fwhm=[10] * 20)
    trunc.write_bytes(trunc.read_bytes()[:1000])
    f["truncated"] = str(trunc)
    (d / "folder").mkdir(exist_ok=True)
    f["folder"] = str(d / "folder")
    (d / "notabundle").mkdir(exist_ok=True)
    (d / "notabundle" / "keep.txt").write_text("the user's notes")
    f["not_bundle"] = str(d / "notabundle")
    (d / "lookalike").mkdir(exist_ok=True)  # has the keys a bundle has, but no format marker: not ours
    (d / "lookalike" / "model.json").write_text(json.dumps({k: {} for k in ("preset_config", "head", "classes",
                                                                            "profile", "tile")}))
    (d / "lookalike" / "weights.pt").write_text("not torch")
    f["lookalike"] = str(d / "lookalike")
    (d / "damaged").mkdir(exist_ok=True)
    (d / "damaged" / "model.json").write_text("{not json")
    (d / "damaged" / "weights.pt").write_text("")
    f["damaged"] = str(d / "damaged")
    (d / "userfile.txt").write_text("the user's file")
    f["user_file"] = str(d / "userfile.txt")
    (d / "profile.json").write_text(json.dumps({"name": "five", "sensor": "others", "level": "L2",
                                                "wavelength_nm": [500, 600, 700, 800, 900], "fwhm_nm": [10] * 5}))
    f["profile5"] = str(d / "profile.json")
    (d / "named").mkdir(exist_ok=True)
    f["classes_named"] = str(labelled_raster(d / "named" / "classes.tif")[0])  # an input named like an output
    f["magnitude_named"] = str(labelled_raster(d / "named" / "magnitude.tif")[0])
    f["nan_model"] = str(d / "nanmodel")
    f["list_missing"] = str(d / "list.txt")
    (d / "list.txt").write_text("scene.tif\nmissing.tif\n")
    return f


@dataclass
class Case:
    id: str
    job: str
    params: Callable[[dict, Path], dict]  # (inputs, this case's output folder) → parameters
    expect: str  # a regex the answer must match: it names the file, field or value


def fin(**kw):
    """Fine-tuning parameters on the scene and its polygons, with `kw` changed."""
    return lambda f, o: {"raster": f["scene"], "polygons": f["polygons"], "class_field": "class",
                         "out": str(o / "model"), "epochs": 1, "window": 32, "frozen_pool": 8, "windows_per_epoch": 8,
                         **{k: (v(f, o) if callable(v) else v) for k, v in kw.items()}}


def cls(**kw):
    return lambda f, o: {"raster": f["scene"], "out": str(o), "clusters": 3,
                         **{k: (v(f, o) if callable(v) else v) for k, v in kw.items()}}


def chg(**kw):
    return lambda f, o: {"before": f["scene"], "after": f["scene"], "out": str(o),
                         **{k: (v(f, o) if callable(v) else v) for k, v in kw.items()}}


def inp(key):
    return lambda f, o: f[key]


CASES = [
    # rasters and their band tables
    Case("info-missing", "info", lambda f, o: {"raster": str(Path(f["scene"]).with_name("nope.tif"))},
         r"nope\.tif does not exist"),
    Case("info-folder", "info", lambda f, o: {"raster": f["folder"]}, r"folder is a folder"),
    Case("info-not-raster", "info", lambda f, o: {"raster": f["not_raster"]}, r"GDAL cannot read .*notraster\.tif"),
    Case("info-no-wavelengths", "info", lambda f, o: {"raster": f["no_wl"]},
         r"nowl\.tif has no wavelength metadata \(7 bands\)"),
    Case("info-fewer-wavelengths", "info", lambda f, o: {"raster": f["few_wl"]},
         r"fewwl\.img: its metadata lists 15 wavelengths for 20 bands"),
    Case("info-duplicate-wavelengths", "info", lambda f, o: {"raster": f["dup_wl"]},
         r"dupwl\.img: bands \d+ and \d+ both have the wavelength"),
    Case("info-negative-fwhm", "info", lambda f, o: {"raster": f["neg_fwhm"]},
         r"negfwhm\.img: band\(s\) 20 have FWHM -5 nm"),
    Case("info-zero-fwhm", "info", lambda f, o: {"raster": f["zero_fwhm"]},
         r"zerofwhm\.img: band\(s\) 1, 2, .* have FWHM 0"),
    Case("info-profile-missing", "info", lambda f, o: {"raster": f["no_wl"], "profile": "no-such-profile"},
         r"no sensor profile 'no-such-profile'"),
    Case("info-profile-band-count", "info", lambda f, o: {"raster": f["no_wl"], "profile": f["profile5"]},
         r"has 7 bands but sensor profile 'five' has 5"),
    Case("info-sensor-unknown", "info", lambda f, o: {"raster": f["scene"], "sensor": "hyperion"},
         r"sensor 'hyperion' is not allowed"),
    Case("info-level-unknown", "info", lambda f, o: {"raster": f["scene"], "level": "L3"},
         r"level 'L3' is not allowed"),
    Case("info-long-path", "info", lambda f, o: {"raster": LONG},
         r"raster: /tmp/x+…x+\.tif cannot be used \(File name too long\)"),
    # classify
    Case("classify-model-and-clusters", "classify", cls(model="m"), r"either a model .* or a number of clusters"),
    Case("classify-neither", "classify", lambda f, o: {"raster": f["scene"], "out": str(o)}, r"either a model"),
    Case("classify-clusters-1", "classify", cls(clusters=1),
         r"clusters 1 is out of range: give a whole number from 2 to 64"),
    Case("classify-clusters-65", "classify", cls(clusters=65), r"clusters 65 is out of range"),
    Case("classify-model-unknown", "classify", cls(clusters=None, model="nobody"), r"no model 'nobody'"),
    Case("classify-model-not-bundle", "classify", cls(clusters=None, model=inp("folder")),
         r"folder is not a model bundle: it has no model\.json"),
    Case("classify-model-damaged", "classify", cls(clusters=None, model=inp("damaged")),
         r"damaged: model\.json is damaged"),
    Case("classify-out-is-file", "classify", cls(out=inp("user_file")),
         r"out: .*userfile\.txt is a file, not a folder"),
    Case("classify-out-overwrites-input", "classify",
         lambda f, o: {"raster": f["classes_named"], "out": str(Path(f["classes_named"]).parent), "clusters": 3},
         r"named/classes\.tif is one of this job's inputs and would be overwritten"),
    Case("classify-nan-model", "classify", cls(clusters=None, model=inp("nan_model")),
         r"nanmodel: \d+ of its weight tensors hold values that are not finite"),
    Case("classify-truncated", "classify", cls(raster=inp("truncated")), r"trunc\.img"),
    Case("classify-preset-unknown", "classify", cls(preset="huge"),
         r"preset 'huge' is not allowed: give one of tiny, small, base"),
    # fine-tune
    Case("finetune-epochs-0", "finetune", fin(epochs=0),
         r"epochs 0 is out of range: give a whole number from 1 to 1000"),
    Case("finetune-batch-size-0", "finetune", fin(batch_size=0), r"batch_size 0 is out of range"),
    Case("finetune-window-0", "finetune", fin(window=0), r"window 0 is out of range"),
    Case("finetune-window-not-multiple", "finetune", fin(window=36, head="light"),
         r"training window 36 px must be a multiple of the patch size 8"),
    Case("finetune-lr-nan", "finetune", fin(lr="nan"), r"lr 'nan' is not allowed: give a number above 0 and at most 1"),
    Case("finetune-lr-0", "finetune", fin(lr=0), r"lr 0 is out of range"),
    Case("finetune-lr-negative", "finetune", fin(lr=-1), r"lr -1 is out of range"),
    Case("finetune-val-fraction", "finetune", fin(val_fraction=1.5),
         r"val_fraction 1\.5 is out of range: give a number from 0 to 0\.9"),
    Case("finetune-polygons-missing", "finetune", fin(polygons="/nowhere/p.gpkg"),
         r"polygons: /nowhere/p\.gpkg does not exist"),
    Case("finetune-polygons-empty", "finetune", fin(polygons=inp("empty")),
         r"empty\.gpkg \(layer 'labels'\) has no features"),
    Case("finetune-polygons-outside", "finetune", fin(polygons=inp("outside")),
         r"none of the 2 features of .*outside\.gpkg lies over the raster"),
    Case("finetune-polygons-wrong-crs", "finetune", fin(polygons=inp("wrong_crs")),
         r"wrongcrs\.geojson: feature \d+ has coordinates .* not valid in the layer's CRS \(WGS 84\).*set it"),
    Case("finetune-class-on-nodata", "finetune", fin(raster=inp("water_nodata"), head="linear"),
         r"water_nodata\.tif: every labelled pixel of class 'water' \(\d+ px\) is no-data in the raster"),
    Case("finetune-field-missing", "finetune", fin(class_field="klass"),
         r"has no field 'klass'; its fields are: class, note"),
    Case("finetune-field-empty-value", "finetune", fin(polygons=inp("no_class")),
         r"feature 1 has no value in the class field 'class'"),
    Case("finetune-single-class", "finetune", fin(polygons=inp("one_class")), r"holds a single class \('water'\)"),
    Case("finetune-out-folder-not-bundle", "finetune", fin(out=inp("not_bundle"), overwrite=True),
         r"notabundle already exists and is a folder that is not a SpecAware model; it is never replaced"),
    Case("finetune-out-file", "finetune", fin(out=inp("user_file"), overwrite=True),
         r"userfile\.txt already exists and is a file; it is never replaced"),
    Case("finetune-out-lookalike", "finetune", fin(out=inp("lookalike"), overwrite=True),
         r"lookalike already exists and is a folder that is not a SpecAware model"),
    Case("finetune-out-bad-name", "finetune", fin(out="no good name!"),
         r"model name 'no good name!' \(the last folder of the path\) may use the letters A–Z"),
    Case("finetune-out-accented-name", "finetune", fin(out="Modèle_1"), r"model name 'Modèle_1' .* without accents"),
    Case("finetune-change-without-after", "finetune", fin(task="change"),
         r"a change model needs task 'change' and 'after'"),
    Case("finetune-after-without-change", "finetune", fin(after=inp("scene")), r"a change model needs task 'change'"),
    Case("finetune-backbone-mode", "finetune", fin(backbone_mode="last-x"),
         r"backbone_mode 'last-x' is not allowed: give one of frozen, last-2, full or last-N"),
    Case("finetune-head-unknown", "finetune", fin(head="unet"),
         r"head 'unet' is not allowed: give one of linear, light, upernet"),
    Case("finetune-backbone-missing", "finetune", fin(backbone="/nowhere/b.pth"),
         r"the backbone /nowhere/b\.pth does not exist"),
    Case("finetune-layer-unknown", "finetune", fin(layer="nolayer"), r"has no layer 'nolayer'; its layers are labels"),
    Case("finetune-task-unknown", "finetune", fin(task="objects"),
         r"task 'objects' is not allowed: give one of pixels, cells, change"),
    Case("finetune-change-classes", "finetune", fin(task="change", after=inp("scene")),
         r"a change model needs two classes in 'class', one of them 'change'"),
    # change
    Case("change-threshold-50", "change", chg(threshold="50"),
         r"threshold '50' is not allowed: give 'significance' or 'otsu', or a magnitude from 0 to 30"),
    Case("change-p-value-0", "change", chg(p_value=0),
         r"p_value 0 is out of range: give a number above 0 and at most 0.5"),
    Case("change-method-unknown", "change", chg(method="pca"),
         r"method 'pca' is not allowed: give one of specaware, irmad"),
    Case("change-threshold-word", "change", chg(threshold="abc"), r"threshold 'abc' is not allowed"),
    Case("change-min-area-negative", "change", chg(min_area=-1),
         r"min_area -1 is out of range: give a number of at least 0"),
    Case("change-no-overlap", "change", chg(after=inp("other_place")),
         r"scene\.tif and .*elsewhere\.tif do not overlap"),
    Case("change-overwrites-input", "change",
         lambda f, o: {"before": f["magnitude_named"], "after": f["scene"],
                       "out": str(Path(f["magnitude_named"]).parent)},
         r"named/magnitude\.tif is one of this job's inputs"),
    Case("change-model-unknown", "change", chg(model="nobody"), r"no model 'nobody'"),
    Case("change-after-missing", "change", chg(after="/nowhere/b.tif"), r"after: /nowhere/b\.tif does not exist"),
    # cells
    Case("cells-size-0", "classify-cells",
         lambda f, o: {"raster": f["scene"], "model": "m", "cell_size": 0, "out": str(o / "c.gpkg")},
         r"cell_size 0 is out of range"),
    Case("cells-both", "classify-cells",
         lambda f, o: {"raster": f["scene"], "model": "m", "cell_size": 8, "zones": f["polygons"],
                       "out": str(o / "c.gpkg")},
         r"either a cell size in pixels or a zones layer"),
    Case("cells-shapefile", "classify-cells",
         lambda f, o: {"raster": f["scene"], "model": "m", "cell_size": 8, "out": str(o / "c.shp")},
         r"give a path ending in \.gpkg"),
    Case("cells-zones-missing", "classify-cells",
         lambda f, o: {"raster": f["scene"], "model": "m", "zones": "/nowhere/z.gpkg", "out": str(o / "c.gpkg")},
         r"zones: /nowhere/z\.gpkg does not exist"),
    # adapt, pretrain, batch
    Case("adapt-minutes-0", "adapt", lambda f, o: {"raster": [f["scene"]], "minutes": 0, "out": str(o / "a.pth")},
         r"minutes 0 is out of range: give a number above 0"),
    Case("adapt-out-not-pth", "adapt", lambda f, o: {"raster": [f["scene"]], "minutes": 1, "out": str(o / "a.txt")},
         r"give a file name ending in \.pth"),
    Case("pretrain-mask-ratio-1", "pretrain", lambda f, o: {"data": [f["scene"]], "out": str(o), "mask_ratio": 1},
         r"mask_ratio 1 is out of range"),
    Case("pretrain-data-missing", "pretrain", lambda f, o: {"data": ["/nowhere/data"], "out": str(o)},
         r"data: /nowhere/data does not exist"),
    Case("batch-list-names-missing", "classify-batch",
         lambda f, o: {"rasters": f["list_missing"], "model": "m", "out": str(o)},
         r"list\.txt line 2: .*missing\.tif does not exist"),
    # models
    Case("models-delete-lookalike", "models", lambda f, o: {"action": "delete", "name": f["lookalike"]},
         r"lookalike is not a bundle written by this engine; it is left alone"),
    Case("models-delete-unknown", "models", lambda f, o: {"action": "delete", "name": "nobody"}, r"no model 'nobody'"),
    Case("models-rename-no-new-name", "models", lambda f, o: {"action": "rename", "name": "m"},
         r"models rename needs the old and the new name"),
    Case("models-action-unknown", "models", lambda f, o: {"action": "burn"},
         r"action 'burn' is not allowed: give one of list, show, delete, rename"),
]
