"""Tests for the deterministic GamGam demo-data generator (localstack.demo_data)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from localstack import demo_data
from localstack.demo_data import (
    GAMGAM_BRANCHES,
    GAMGAM_COUNTER,
    generate_dataset,
    generate_gamgam,
    simulate_gamgam,
)

SMALL = 2_000


def _read(path) -> dict[str, ak.Array]:
    with uproot.open(path) as handle:
        arrays = handle["analysis"].arrays(list(GAMGAM_BRANCHES))
    return {name: arrays[name] for name in GAMGAM_BRANCHES}


def _leading_pair_mass(photons) -> np.ndarray:
    """Invariant mass of the two leading (massless) photons, explicit algebra."""
    pt = ak.to_numpy(photons["photon_pt"][:, :2]).astype(np.float64)
    eta = ak.to_numpy(photons["photon_eta"][:, :2]).astype(np.float64)
    phi = ak.to_numpy(photons["photon_phi"][:, :2]).astype(np.float64)
    energy = ak.to_numpy(photons["photon_e"][:, :2]).astype(np.float64).sum(axis=1)
    px = (pt * np.cos(phi)).sum(axis=1)
    py = (pt * np.sin(phi)).sum(axis=1)
    pz = (pt * np.sinh(eta)).sum(axis=1)
    return np.sqrt(np.clip(energy**2 - px**2 - py**2 - pz**2, 0.0, None))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """One file large enough for a statistical look at the mass spectrum."""
    path = tmp_path_factory.mktemp("gamgam") / "big.root"
    return generate_gamgam(path, n_events=20_000, seed=11)


def test_same_seed_gives_identical_files(tmp_path):
    first = _read(generate_gamgam(tmp_path / "a.root", n_events=SMALL, seed=3))
    second = _read(generate_gamgam(tmp_path / "b.root", n_events=SMALL, seed=3))
    for name in GAMGAM_BRANCHES:
        assert ak.to_list(first[name]) == ak.to_list(second[name]), name


def test_different_seed_gives_different_events():
    one = simulate_gamgam(SMALL, seed=3)
    other = simulate_gamgam(SMALL, seed=4)
    assert not np.array_equal(one.mass, other.mass)
    lead_one = ak.to_numpy(one.photons["photon_pt"][:, 0])
    lead_other = ak.to_numpy(other.photons["photon_pt"][:, 0])
    assert not np.array_equal(lead_one, lead_other)


def test_photon_multiplicity_order_and_acceptance():
    photons = simulate_gamgam(SMALL, seed=5).photons
    counts = ak.to_numpy(ak.num(photons["photon_pt"]))
    assert counts.min() >= 2
    assert counts.max() == 3
    assert 0.05 < np.mean(counts == 3) < 0.25  # a soft third photon sometimes
    # pT sorted in decreasing order within every event
    pt = photons["photon_pt"]
    assert ak.all(pt[:, :-1] >= pt[:, 1:])
    # every branch has the same jagged structure
    for name in GAMGAM_BRANCHES:
        assert ak.to_list(ak.num(photons[name])) == counts.tolist(), name
    # the two leading photons satisfy the skim acceptance
    assert ak.all(pt[:, 1] > 25.0)
    assert ak.all(abs(photons["photon_eta"]) < 2.37)


def test_photons_carry_the_generated_mass():
    sample = simulate_gamgam(SMALL, seed=6)
    assert 0 < sample.is_signal.sum() < SMALL
    mass = _leading_pair_mass(sample.photons)
    np.testing.assert_allclose(mass, sample.mass, rtol=2e-4)
    # massless photons: E = pT cosh(eta)
    pt = ak.flatten(sample.photons["photon_pt"])
    eta = ak.flatten(sample.photons["photon_eta"])
    energy = ak.flatten(sample.photons["photon_e"])
    np.testing.assert_allclose(energy, pt * np.cosh(eta), rtol=1e-4)
    # the signal sits at 125 GeV with a width of about 2 GeV
    signal_mass = sample.mass[sample.is_signal]
    assert abs(np.mean(signal_mass) - 125.0) < 0.5
    assert 1.5 < np.std(signal_mass) < 2.5


def test_each_photon_cut_removes_something():
    photons = simulate_gamgam(5_000, seed=8).photons
    lead2 = {name: photons[name][:, :2] for name in GAMGAM_BRANCHES}
    tight = ak.to_numpy(lead2["photon_isTightID"])
    rel_iso = ak.to_numpy(lead2["photon_ptcone20"] / lead2["photon_pt"])
    abs_eta = np.abs(ak.to_numpy(lead2["photon_eta"]))
    fail_id = np.mean(~tight.all(axis=1))
    fail_iso = np.mean((rel_iso >= 0.055).any(axis=1))
    in_crack = np.mean(((abs_eta > 1.37) & (abs_eta < 1.52)).any(axis=1))
    assert 0.10 < fail_id < 0.60, fail_id
    assert 0.05 < fail_iso < 0.50, fail_iso
    assert 0.03 < in_crack < 0.30, in_crack
    assert (rel_iso == 0.0).any()  # many photons have no track in the cone
    assert (ak.to_numpy(lead2["photon_pt"])[:, 0] < 50.0).any()  # some fail the pT cut


def test_mass_spectrum_has_an_excess_at_125(big_file):
    mass = _leading_pair_mass(_read(big_file))
    counts, _edges = np.histogram(mass, bins=[113.0, 121.0, 129.0, 137.0])
    low, peak, high = counts
    sidebands = 0.5 * (low + high)  # linear interpolation under the peak
    assert peak > sidebands + 5.0 * np.sqrt(sidebands), counts
    # the background falls with mass
    assert low > high


def test_file_layout(big_file):
    with uproot.open(big_file) as handle:
        assert "analysis" in handle.keys(cycle=False)
        tree = handle["analysis"]
        assert tree.num_entries == 20_000
        # the six photon branches plus the counter uproot needs for jagged data
        assert set(tree.keys()) == {*GAMGAM_BRANCHES, GAMGAM_COUNTER}
        types = tree.typenames()
        for name in ("photon_pt", "photon_eta", "photon_phi", "photon_e", "photon_ptcone20"):
            assert types[name] == "float[]", (name, types[name])
        assert types["photon_isTightID"] == "bool[]"
        arrays = tree.arrays(list(GAMGAM_BRANCHES))
    assert set(arrays.fields) == set(GAMGAM_BRANCHES)
    meta = demo_data.read_metadata(big_file)
    assert meta is not None
    assert meta["seed"] == 11 and meta["n_events"] == 20_000


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(demo_data.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        generate_gamgam(tmp_path / "x.root", n_events=100, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_generate_dataset_names_seeds_and_reuse(tmp_path):
    paths = generate_dataset(tmp_path, n_files=2, n_events=500, seed=2, progress=True)
    assert [p.name for p in paths] == ["demo.GamGam.data_01.root", "demo.GamGam.data_02.root"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files
    first, second = (_read(p) for p in paths)
    assert ak.to_list(first["photon_pt"]) != ak.to_list(second["photon_pt"])  # own seed each

    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = generate_dataset(tmp_path, n_files=2, n_events=500, seed=2, progress=False)
    assert again == paths
    assert [p.stat().st_mtime_ns for p in again] == mtimes

    # a different event count or seed is not mistaken for the same dataset
    resized = generate_dataset(tmp_path, n_files=1, n_events=400, seed=2, progress=False)
    assert resized == paths[:1]
    resized_pt = ak.to_list(_read(resized[0])["photon_pt"])
    assert len(resized_pt) == 400
    reseeded = generate_dataset(tmp_path, n_files=1, n_events=400, seed=9, progress=False)
    assert demo_data.read_metadata(reseeded[0])["seed"] != demo_data._file_seed(2, 1)
    assert ak.to_list(_read(reseeded[0])["photon_pt"]) != resized_pt


def test_invalid_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        simulate_gamgam(0)
    with pytest.raises(ValueError):
        simulate_gamgam(10, signal_fraction=1.5)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, n_files=0, progress=False)


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), "--files", "2", "--events", "300", "--seed", "4", "--quiet"]
    assert demo_data.main(args) == 0
    text = capsys.readouterr().out
    assert "demo.GamGam.data_01.root" in text and "demo.GamGam.data_02.root" in text
    assert "2 written, 0 reused" in text
    assert demo_data.main(args) == 0
    assert "0 written, 2 reused" in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad",
    [
        ["--out", "OUT", "--events", "0"],
        ["--out", "OUT", "--files", "two"],
        ["--out", "OUT", "--seed", "-1"],
        ["--files", "2"],
    ],
)
def test_cli_bad_arguments_give_one_line(tmp_path, capsys, bad):
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in bad]
    with pytest.raises(SystemExit) as excinfo:
        demo_data.main(argv)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    assert "Traceback" not in err
