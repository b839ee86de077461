from pathlib import Path

from evaluators.policy import TimingPolicy, VerifyPolicy
from search.config import CampaignConfig, load_config


def test_minimal_campaign_loads_with_defaults(campaign_file: Path) -> None:
    c = load_config(campaign_file)
    assert isinstance(c, CampaignConfig)
    assert c.campaign.name == "t" and c.campaign.seed == 1
    assert c.budget.max_evaluations == 20 and c.budget.max_minutes == 5.0
    assert c.budget.max_tokens is None
    assert [t.hardware for t in c.targets] == ["cpu"] and c.targets[0].wait_s == 0.0
    assert c.proposers[0].kind == "rewrites" and c.proposers[0].name == "rewrites"
    assert c.verify == VerifyPolicy() and c.timing == TimingPolicy()


def test_paths_are_resolved_against_the_campaign_file_not_the_cwd(campaign_file: Path, monkeypatch) -> None:
    monkeypatch.chdir("/")
    c = load_config(campaign_file)
    root = campaign_file.parent
    assert c.campaign.out == root / "runs" / "t"
    assert c.problem_files == (root / "problems/level1/1_add.py", root / "problems/level1/2_mul.py")


def test_out_argument_overrides_campaign_out(campaign_file: Path, tmp_path: Path) -> None:
    assert load_config(campaign_file, out=tmp_path / "elsewhere").campaign.out == tmp_path / "elsewhere"


def test_absolute_problem_paths_are_accepted(campaign_file: Path) -> None:
    target = campaign_file.parent / "problems/level2/3_fused.py"
    text = campaign_file.read_text().replace('"problems/level1/*.py"', f'"{target}"')
    campaign_file.write_text(text)
    assert load_config(campaign_file).problem_files == (target,)


def test_levels_filter_a_glob_by_parent_folder(campaign_file: Path) -> None:
    text = campaign_file.read_text().replace('"problems/level1/*.py"', '"problems/*/*.py"\nlevels = [2]')
    campaign_file.write_text(text)
    c = load_config(campaign_file)
    assert [f.name for f in c.problem_files] == ["3_fused.py"]
    assert c.problems[0].levels == ("level2",)


def test_policy_tables_override_fields_by_name(campaign_file: Path) -> None:
    campaign_file.write_text(campaign_file.read_text() + """
[verify]
trials = 2
probes = ["negative"]
static = "warn"
atol_fp32 = 1

[timing]
baselines = ["eager"]
flush_cache = false

[evolution]
parents = 2
""")
    c = load_config(campaign_file)
    assert c.verify.trials == 2 and c.verify.probes == ("negative",) and c.verify.static == "warn"
    assert c.verify.atol_fp32 == 1.0 and isinstance(c.verify.atol_fp32, float)
    assert c.timing.baselines == ("eager",) and c.timing.flush_cache is False
    assert c.evolution.parents == 2


def test_proposer_options_hold_kind_specific_keys(campaign_file: Path) -> None:
    (campaign_file.parent / "hand").mkdir()
    campaign_file.write_text(campaign_file.read_text() + """
[[proposers]]
kind = "files"
dir = "hand"
per_generation = 3

[[proposers]]
kind = "optuna"
name = "cma"
sampler = "cmaes"
""")
    c = load_config(campaign_file)
    files, cma = c.proposers[1], c.proposers[2]
    assert files.options == {"dir": campaign_file.parent / "hand"} and files.per_generation == 3
    assert cma.name == "cma" and cma.options == {"sampler": "cmaes"}


def test_bench_requests_carry_the_campaigns_policies_to_the_targets_device(campaign_file: Path) -> None:
    campaign_file.write_text(campaign_file.read_text() + """
[verify]
trials = 2

[timing]
time_cap_s = 3.5
""")
    c = load_config(campaign_file)
    problem = str(c.problem_files[0])
    for hardware, device in (("cpu", "cpu"), ("h200", "cuda"), ("cuda-sm90", "cuda"), ("m4", "mps")):
        req = c.bench_request(problem, "SOURCE", hardware, "large", "/campaign/cache", rounds=2)
        assert (req.device, req.mode, req.scale, req.cache_dir) == (device, "bench", "large", "/campaign/cache")
        assert req.candidate_source == "SOURCE" and req.problem_path == problem
        assert req.verify == c.verify and req.verify.trials == 2
        assert req.timing.time_cap_s == 3.5 and req.timing.rounds == 2
    assert c.bench_request(problem, "SOURCE", "cpu", "default", "/c", rounds=1).timing.rounds == 1


def test_a_gpu_holds_builds_ahead_of_its_verify_slots_and_a_cpu_one(campaign_file: Path) -> None:
    text = campaign_file.read_text().replace('hardware = "cpu"\n', 'hardware = "cpu"\n\n[[targets]]\n'
                                             'hardware = "h200"\nverify_slots = 6\n\n[[targets]]\n'
                                             'hardware = "h100"\nbuild_ahead = 0\n')
    campaign_file.write_text(text)
    c = load_config(campaign_file)
    assert (c.verify_slots("cpu"), c.build_ahead("cpu"), c.in_flight("cpu")) == (1, 1, 2)
    assert (c.verify_slots("h200"), c.build_ahead("h200"), c.in_flight("h200")) == (6, 6, 12)
    assert (c.verify_slots("h100"), c.build_ahead("h100"), c.in_flight("h100")) == (2, 0, 2)
