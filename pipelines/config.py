"""The typed model of params.yaml: one section per stage, every key required, unknown keys rejected.

It sits above the stage packages (it may import them to run their parsers; they never import it
at run time), and the stage entry points in ``tasks/`` hand each stage its typed section.

params.yaml is the only place defaults live; this module holds types and constraints, never a
default value. `load_params` reads the file once, lays the connection URLs from the environment
over ``paths`` and validates everything before a stage does any work. Every problem in the file
is reported at once, each on its own line with its key path and what is allowed, as a
`ParamsError` (a `NonRetryableError`: the stage exits 3 and Airflow does not retry).

Two nested settings keep their own domain parsers, which this model runs at load time:
``extract.mapping`` (identifier and injection checks, `pipelines.core.warehouse.parse_mapping`)
and ``evaluate.gate`` (metric names against the computed cut-offs, `pipelines.evaluate.gate`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.core.io import NonRetryableError

# Connection URLs may come from the environment instead of the file (secrets never live in git), and
# so may the registry's artifact store: a location every worker sees where they share no working tree.
ENV_OVERRIDES = {"warehouse_url": "RETRAIN_WAREHOUSE_URL", "registry_url": "RETRAIN_REGISTRY_URL",
                 "artifact_store": "RETRAIN_ARTIFACT_STORE"}
# The Airflow connection ``registry`` (what dags/stage_operator.py hands over) wins over both.
REGISTRY_CONNECTION_ENV = "AIRFLOW_CONN_REGISTRY"

PositiveInt = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class ParamsError(NonRetryableError):
    """params.yaml is missing, unreadable or invalid; the message names every offending key."""


class Section(BaseModel):
    """A params.yaml section: frozen, and a key the model does not know is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def updated(self, **changes: Any):
        """A validated copy with ``changes`` laid over (as params.yaml spells the keys)."""
        return type(self).model_validate({**self.model_dump(by_alias=True), **changes})


def _iso_date(value: Any) -> str:
    text = value.isoformat() if isinstance(value, dt.date) else str(value)  # YAML reads bare dates as dates
    try:
        if dt.date.fromisoformat(text).isoformat() != text:
            raise ValueError
    except ValueError:
        raise ValueError(f"must be a date YYYY-MM-DD, got {value!r}") from None
    return text


class RunParams(Section):
    logical_date: str

    _date = field_validator("logical_date", mode="before")(_iso_date)


class PathsParams(Section):
    warehouse_url: str
    registry_url: str
    artifact_store: str
    checkpoints: str
    extract: str
    validation: str = Field(alias="validate")
    profiles: str
    candidate: str
    evaluate: str
    promote: str
    publish: str
    reports: str
    quarantine: str
    snapshot: str

    model_config = ConfigDict(populate_by_name=True)


class DemoDataParams(Section):
    seed: int
    n_users: PositiveInt
    n_items: PositiveInt
    n_groups: PositiveInt
    n_categories: PositiveInt
    start_date: str
    days: PositiveInt
    events_per_user_per_day: float = Field(gt=0)
    n_households: int = Field(ge=0)  # explicit groups (group_members, group_events); 0: no group tables

    _date = field_validator("start_date", mode="before")(_iso_date)


class ExtractParams(Section):
    interval_days: PositiveInt
    window_days: int = Field(ge=0)
    lookback_days: int = Field(ge=0)
    read_workers: PositiveInt
    connect_attempts: PositiveInt
    connect_backoff_s: float = Field(ge=0)
    connect_max_backoff_s: float = Field(ge=0)
    mapping: dict[str, Any]

    @field_validator("mapping")
    @classmethod
    def _mapping(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        from pipelines.extract.mapping import parse_extract_mapping

        try:
            parse_extract_mapping(mapping)
        except NonRetryableError as exc:  # its message names the key; reported with the other problems
            raise ValueError(str(exc)) from None
        return mapping

    @model_validator(mode="after")
    def _backoff(self) -> ExtractParams:
        if self.connect_backoff_s > self.connect_max_backoff_s:
            raise ValueError("connect_backoff_s must not exceed connect_max_backoff_s")
        return self


class DriftParams(Section):
    min_rows: int = Field(ge=0)
    popularity_smoothing: float = Field(gt=0)
    max_event_mix_tv: Share
    max_popularity_js: Share
    max_activity_js: Share
    new_share_min_nights: int = Field(ge=0)
    max_new_user_share: Share
    max_new_item_share: Share


class ValidateParams(Section):
    min_rows: int = Field(ge=0)
    min_interval_rows: int = Field(ge=0)
    max_staleness_hours: float = Field(gt=0)
    rating_min: float
    rating_max: float
    volume_nights: PositiveInt
    volume_min_nights: int = Field(ge=0)
    volume_min_ratio: float = Field(ge=0)
    volume_max_ratio: float = Field(gt=0)
    max_user_share: float = Field(gt=0, le=1)
    user_share_min_rows: int = Field(ge=0)
    title_min_chars: int = Field(ge=0)
    title_max_chars: PositiveInt
    drift: DriftParams
    # Checked entry by entry by the validate stage (its errors name validate.accept[i]).
    accept: list[dict[str, Any]]

    @model_validator(mode="after")
    def _ranges(self) -> ValidateParams:
        for low, high in (("rating_min", "rating_max"), ("volume_min_ratio", "volume_max_ratio"),
                          ("title_min_chars", "title_max_chars")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        return self


class ProfilesParams(Section):
    min_user_interactions: int = Field(ge=3)  # a train item, a validation item and a test item
    profile_items: int = Field(ge=0)
    max_text_chars: PositiveInt


class WarmNightParams(Section):
    """How a night that starts from the champion trains (README "Warm nights")."""

    new_events_only: bool
    replay_ratio: float = Field(ge=0)  # earlier windows trained beside the new ones, per new window
    epochs: PositiveInt
    learning_rate_scale: float = Field(gt=0)
    train_text_tower: bool
    patience: PositiveInt
    keep_champion_unless_better: bool  # the champion's weights compete as epoch 0


class FinetuneParams(Section):
    base_model: str
    max_text_tokens: PositiveInt
    lora_rank: PositiveInt
    lora_alpha: PositiveInt
    lora_dropout: float = Field(ge=0, lt=1)
    lora_target_modules: list[str] = Field(min_length=1)
    lora_layers: list[int] = Field(min_length=1)
    hidden_dim: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    dropout: float = Field(ge=0, lt=1)
    attention_dropout: float = Field(ge=0, lt=1)
    id_dropout: float = Field(ge=0, lt=1)  # share of items whose ID vector each training step drops
    max_seq_len: int = Field(ge=2)
    batch_size: PositiveInt
    text_items_per_step: int = Field(ge=0)
    text_refresh_steps: int = Field(ge=0)
    learning_rate: float = Field(gt=0)
    lm_learning_rate: float = Field(ge=0)
    lr_schedule: Literal["constant", "linear", "cosine"]
    warmup_steps: int = Field(ge=0)
    weight_decay: float = Field(ge=0)
    epochs: PositiveInt
    max_steps: int = Field(ge=0)
    budget_minutes: float = Field(ge=0)
    device: Literal["auto", "cuda", "cpu"]
    grad_accumulation_steps: PositiveInt
    checkpoint_every_steps: int = Field(ge=0)  # 0: no checkpoints
    warm_start: bool
    warm_nights: WarmNightParams
    export_merged: bool
    patience: PositiveInt
    average_best_epochs: PositiveInt  # the mean of this many best epochs' weights may serve; 1: off
    seed: int

    @model_validator(mode="after")
    def _heads(self) -> FinetuneParams:
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be a multiple of num_heads ({self.num_heads})")
        return self


class EvaluateParams(Section):
    k: PositiveInt
    ks: list[int] = Field(min_length=1)
    bootstrap_resamples: PositiveInt
    seed: int
    ease_lambdas: list[float] = Field(min_length=1)
    ease_max_items: int = Field(ge=0)
    # The recency prior's weights (0, off, is always tried) and windows in days (0: all history).
    recency_weights: list[float]  # empty: the prior stays off
    recency_windows_days: list[int] = Field(min_length=1)
    # The promotion gate keeps its own parser (it checks metric names against ks); run at load.
    gate: dict[str, Any] | None

    @field_validator("ks")
    @classmethod
    def _positive_cutoffs(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError(f"every cut-off must be >= 1, got {ks}")
        return ks

    @field_validator("recency_weights", "recency_windows_days")
    @classmethod
    def _not_negative(cls, values: list[float]) -> list[float]:
        if any(v < 0 for v in values):
            raise ValueError(f"must be >= 0, got {values}")
        return values

    @model_validator(mode="after")
    def _gate(self) -> EvaluateParams:
        from pipelines.evaluate.gate import Computed, parse_gate

        parse_gate(self.gate, Computed.for_cutoffs(self.ks, self.k))
        return self


class PublishParams(Section):
    k: PositiveInt


class GroupsParams(Section):
    """Interest groups, group recommendations and cold-user backoff (evaluate chooses, publish serves)."""

    n_groups: int = Field(ge=0)  # 0: chosen by silhouette between 2 and max_groups
    max_groups: int = Field(ge=2)
    min_group_size: PositiveInt
    strategies: list[Literal["average", "least_misery", "most_pleasure", "borda", "gfar"]] = Field(min_length=1)
    relevant_items: PositiveInt
    sampled_group_sizes: list[int] = Field(min_length=1)
    sampled_groups: int = Field(ge=0)
    backoff_strengths: list[float] = Field(min_length=1)
    backoff_max_interactions: PositiveInt
    item_model_lambdas: list[float]  # group_model's EASE part: L2 weights tried; empty = off
    item_model_weights: list[float]  # its blend weights tried (0 = off, always worth listing)
    item_model_max_items: PositiveInt  # larger catalogues skip it (its Gram matrix is items^2)
    profile_items: PositiveInt
    profile_categories: PositiveInt
    seed: int

    @field_validator("sampled_group_sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if any(size < 2 for size in sizes):
            raise ValueError(f"a group has at least 2 members, got {sizes}")
        return sizes

    @field_validator("item_model_lambdas")
    @classmethod
    def _lambdas(cls, lambdas: list[float]) -> list[float]:
        if any(lam <= 0 for lam in lambdas):
            raise ValueError(f"every L2 weight must be > 0, got {lambdas}")
        return lambdas

    @field_validator("item_model_weights")
    @classmethod
    def _weights(cls, weights: list[float]) -> list[float]:
        if any(w < 0 for w in weights):
            raise ValueError(f"every blend weight must be >= 0 (0 = the item model off), got {weights}")
        return weights

    @field_validator("backoff_strengths")
    @classmethod
    def _strengths(cls, strengths: list[float]) -> list[float]:
        if any(c < 0 for c in strengths):
            raise ValueError(f"every backoff strength must be >= 0 (0 = no backoff), got {strengths}")
        return strengths


class Params(Section):
    """The whole of params.yaml."""

    run: RunParams
    paths: PathsParams
    demo_data: DemoDataParams
    extract: ExtractParams
    validation: ValidateParams = Field(alias="validate")
    profiles: ProfilesParams
    finetune: FinetuneParams
    evaluate: EvaluateParams
    publish: PublishParams
    groups: GroupsParams

    model_config = ConfigDict(populate_by_name=True)

    def as_dict(self) -> dict[str, Any]:
        """The params as plain data, keyed exactly as in params.yaml."""
        return self.model_dump(by_alias=True, mode="python")


def laid_over(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Raw params ``base`` with ``changes`` merged in, nested mappings key by key (an override file)."""
    merged = dict(base)
    for key, value in changes.items():
        nested = isinstance(value, Mapping) and isinstance(base.get(key), Mapping)
        merged[key] = laid_over(base[key], value) if nested else value
    return merged


def load_params(path: str | Path = "params.yaml", environ: Mapping[str, str] | None = None) -> Params:
    """Reads and validates params.yaml; connection URLs may come from the environment instead.

    Raises:
        ParamsError: the file is missing, not YAML, not a mapping, or fails validation; the
            message names the file and every offending key path with what is allowed.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"params file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"params file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, source=str(path), environ=os.environ if environ is None else environ)


def parse_params(raw: Mapping[str, Any], source: str = "params", environ: Mapping[str, str] | None = None) -> Params:
    """Validates params already read (``raw`` is not changed); see `load_params`."""
    raw = dict(raw)
    if isinstance(raw.get("paths"), dict):
        raw["paths"] = {**raw["paths"], **{key: environ[name] for key, name in ENV_OVERRIDES.items()
                                           if environ and environ.get(name)}}
        if environ and environ.get(REGISTRY_CONNECTION_ENV, "").strip():
            raw["paths"]["registry_url"] = registry_connection_url(environ[REGISTRY_CONNECTION_ENV])
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        raise ParamsError(f"{source} is invalid ({len(lines)} problem{'s' if len(lines) > 1 else ''}):\n"
                          + "\n".join(f"  {line}" for line in lines)) from None


def registry_connection_url(value: str) -> str:
    """The registry URL (password included: the registry connects with it) of the Airflow connection
    ``registry`` in its URI or JSON form."""
    from pipelines.core.warehouse import airflow_connection_url

    return airflow_connection_url(value, REGISTRY_CONNECTION_ENV).render_as_string(hide_password=False)


def _describe(error: Mapping[str, Any]) -> str:
    """One line per problem: the key path, what is wrong, and what is allowed."""
    loc = [str(part) if not isinstance(part, int) else f"[{part}]" for part in error["loc"]]
    where = ".".join(loc).replace(".[", "[") or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{where}: unknown key{hint} (allowed: {', '.join(allowed)})"
    if error["type"] == "missing":
        return f"{where}: missing (params.yaml is the only place defaults live: every key must be set)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith((f"{where}.", f"{where}:")):  # a domain parser already named the key
        return message
    got = error.get("input")
    shown = "" if isinstance(got, (dict, list)) or error["type"].startswith("value_error") else f" (got {got!r})"
    return f"{where}: {message}{shown}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at ``loc`` accepts, as params.yaml spells them."""
    model: Any = Params
    for part in loc:
        field = next((f for name, f in model.model_fields.items() if (f.alias or name) == part), None)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return [field.alias or name for name, field in model.model_fields.items()]
