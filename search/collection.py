"""The facade every edge (the CLI, the web API) calls: indexing, search, duplicates, clean-up
plans, apply/undo, check and export. Each method opens what it needs of the library lazily and
hands the work to its room (indexer/, search/dups, search/cleanup, search/upkeep)."""

import os
import time
from pathlib import Path
from typing import cast

import numpy as np

from indexer import job, model, quality, runtime, watch
from indexer.config import (
    DB_NAME,
    DEFAULT_K,
    DEFAULT_MAX_PIXELS,
    DEFAULT_PRECISION,
    default_library_dir,
    default_model,
)
from indexer.decode import Recipe, decode_bytes, decode_file
from indexer.errors import BadQuery, ImageError, ModelMismatch, NotFound
from indexer.job import IndexOptions, IndexSummary
from indexer.library import flags as flag_table
from indexer.library import layout, vectorfile, writer
from indexer.library.browse import Browse
from indexer.library.store import Store
from search import knn
from search.cleanup.facade import CleanupMethods
from search.curate.facade import Curation
from search.dups import run
from search.dups.decisions import list_decisions, mark, unmark
from search.dups.groups import DupReport
from search.dups.rotations import query_turned
from search.dups.run import DupOptions
from search.knn import Hit, QueryResult
from search.upkeep.check import CheckReport, check_library, repair_library
from search.upkeep.export import ExportSummary, export_parquet

__all__ = ["Collection", "DupOptions", "IndexOptions"]


class Collection(CleanupMethods):
    """One library directory and, loaded on first need, its model and vector index."""

    def __init__(
        self,
        directory: str | Path | None = None,
        model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        index_type: str = "auto",
        runtime: str = "auto",
        fast: bool = False,
    ):
        self.directory = Path(directory or default_library_dir()).expanduser().absolute()
        self.model_arg, self.device, self.dtype, self.runtime = model, device, dtype, runtime
        self.index_type = index_type
        self._sample_roots: list[str] | None = None  # photos for the int8 gate: being indexed
        self.fast = fast  # --fast: DINOv2 at 196 px; a library made so keeps it
        self._store: Store | None = None
        self._embedder = None
        self._vindex: knn.VectorIndex | None = None
        # a second writer: 0 = refuse at once, None = wait (--wait), else seconds; on_wait(holder)
        self.writer_wait: float | None = 0.0
        self.on_writer_wait = None

    # --- parts, opened lazily -------------------------------------------------------------------

    def store(self, create: bool = False) -> Store:
        if self._store is None:
            self._store = Store.open(self.directory, create=create)
        return self._store

    def model_id(self) -> str:
        """The model this collection embeds with: the library's, else --model, else the default."""
        info = self.store(create=False).model() if self._library_exists() else None
        if info and self.model_arg:
            wanted = model.resolve(self.model_arg).id
            if wanted != info.id:
                raise ModelMismatch(
                    f"library {self.directory} holds {info.id} vectors; --model {self.model_arg} "
                    "would mix models. Use another --index for that model"
                )
        if info:
            return info.id
        return self.model_arg or default_model()

    def embedder(self):
        if self._embedder is None:
            info = self.store().model() if self._library_exists() else None
            held = info.precision if info else None  # a new library: no precision yet
            record = (info.runtime or {}) if info else {}
            args = (self.device, self.dtype, self.runtime, held, self._sample_roots)
            self._embedder = runtime.load(self.model_id(), *args, self._fast(info), held=record)
            self._check_recipe(self._embedder.recipe)
        return self._embedder

    def import_runtime(self) -> None:
        """Import what the embedder will run on (torch: ~2 s) without loading the model."""
        runtime.import_backend(self.runtime, self.device)

    def _recipe_hint(self) -> Recipe | None:
        """The preprocessing without loading the model: the library's record, else the
        checkpoint's config on disk (lets decoding start while the model loads)."""
        if self._embedder is not None:
            return self._embedder.recipe
        info = self.store().model() if self._library_exists() else None
        if info:
            return Recipe.from_json(info.recipe)
        if self.fast:
            return runtime.fast_recipe(model.resolve(self.model_id()))
        return model.local_recipe(self.model_id())

    def _fast(self, info) -> bool:
        """Whether vectors are made at --fast's size: the library's choice once it has one."""
        return runtime.keeps_fast((info.runtime or {}) if info else None, self.fast, self.directory)

    def _check_recipe(self, recipe: Recipe) -> None:
        info = self.store().model() if self._library_exists() else None
        if info and Recipe.from_json(info.recipe) != recipe:
            raise ModelMismatch(
                f"{info.id} now preprocesses images differently from when this library was "
                "built; re-index into a new --index"
            )

    def _library_exists(self) -> bool:
        return self._store is not None or (self.directory / DB_NAME).exists()

    def close(self) -> None:
        if self._store:
            self._store.close()
            self._store = None

    # --- indexing -------------------------------------------------------------------------------

    def index(
        self,
        paths,
        options: IndexOptions | None = None,
        progress=None,
        index_type: str | None = None,
    ) -> IndexSummary:
        """Index paths (keeping `index_type` for the library when given). A run that creates
        the library but embeds nothing, or fails before it does, leaves no library behind."""
        self.model_id()  # refuse a model mismatch before walking anything
        if info := (self.store().model() if self._library_exists() else None):
            runtime.refuse_mixing(self.dtype, info.precision)  # also with nothing to embed
            self._fast(info)
        if self.model_arg:
            model.resolve(self.model_arg)  # an unknown --model fails before a library is made
        new, missing = not self._library_exists(), layout.outermost_missing(self.directory)
        store = self.store(create=True)
        with self.writing("index " + " ".join(str(p) for p in paths)):  # busy: nothing touched
            try:
                store.require_writable("index")
                if index_type:
                    self.set_index_type(index_type)
                roots, hint = [str(p) for p in paths], self._recipe_hint()
                self._sample_roots = roots  # Ray actors load the embedder this picks
                summary = job.run(store, roots, self.embedder, options, progress, hint)
            except BaseException:
                if new:
                    self._discard_unbound(missing)
                raise
            if new and self._discard_unbound(missing):
                return summary
            self.vector_index()  # bring the derived FAISS file up to date now, not at first query
        return summary

    def watch(
        self, paths, options=None, progress=None, on_batch=None, stop=None, poll=False, kind=None
    ):
        """Index `paths`, then keep the library current as their files change until `stop` is
        set (indexer/watch.py); each batch waits its turn for the writer lock.
        on_batch(batch, summary, error): batch None for the first, whole run."""
        options = options or IndexOptions()
        exclude, hidden = options.exclude, options.include_hidden
        watcher = watch.Watcher(paths, [self.directory], poll, exclude, hidden)
        self.writer_wait = None
        report = on_batch or (lambda *_: None)
        with watcher:  # watching before the first run: nothing changed meanwhile is missed
            report(None, self.index(paths, options, progress, kind), None)
            index = lambda roots: self.index(roots, options, progress)  # noqa: E731
            watch.keep_current(watcher, index, report, stop)

    def writing(self, doing: str):
        """Hold the library's writer lock while `doing`; another writer waits or is refused
        with who holds it (indexer/library/writer.py)."""
        return writer.writing(self.directory, doing, self.writer_wait, self.on_writer_wait)

    def _discard_unbound(self, missing: Path | None) -> bool:
        """Remove the library this run made if no model was bound to it (nothing embedded); and
        the folders made for it (`missing`: the outermost). True when it did."""
        if self._store is None or self._store.model() is not None:
            return False
        self.close()
        layout.remove_library(self.directory, missing)
        return True

    def vector_index(self) -> knn.VectorIndex:
        store = self.store()
        generation = store.generation
        if self._vindex is not None and self._vindex.generation == generation:
            return self._vindex
        self._vindex = knn.VectorIndex.load(self.directory, generation)
        if self._vindex is not None:
            loaded = self._vindex
            wanted = knn.choose_index_type(loaded.count, loaded.index.d, self._index_type())
            if wanted != loaded.kind:  # the user chose another --index-type: rebuild
                self._vindex = None
        if self._vindex is None:
            self._vindex = self._updated_or_built(store)
            if not store.read_only:  # read-only media: the index lives in memory only
                self._vindex.save(self.directory)
        if self._vindex.kind == "ivfpq":
            # re-scores IVF-PQ candidates; a row deleted meanwhile gets zeros (and is dropped)
            self._vindex.exact = store.vectors_by_ids
        return self._vindex

    def _updated_or_built(self, store: Store) -> knn.VectorIndex:
        """The previous index file brought up to date with what changed since, when it is of the
        right kind and the change is small; else a new index from all the vectors."""
        with store.snapshot():  # rows and the list of changed ones from one snapshot
            generation = store.generation
            ids, slots, space = store.vector_rows()
            kind = knn.choose_index_type(len(ids), space.shape[1], self._index_type())
            previous = knn.VectorIndex.load_latest(self.directory, generation)
            if previous is not None and previous.kind != kind:
                previous = None
            changed = store.changed_since(previous.generation) if previous else None
        # outside the read transaction (an HNSW build takes minutes); the memory map stays
        # valid: the file is append-only and compaction keeps the previous file
        if previous is not None and changed is not None:
            updated = previous.updated(
                ids, lambda rows: space[slots[rows]], space.shape[1], changed, generation
            )
            if updated is not None:
                return updated
        return knn.VectorIndex.build(ids, vectorfile.gather(space, slots), kind, generation)

    def set_index_type(self, kind: str) -> None:
        """Keep `kind` (auto, flat, hnsw) as this library's index type for every later command."""
        if kind not in knn.INDEX_TYPES:
            raise BadQuery(f"unknown index type {kind!r}; choose one of {knn.INDEX_TYPES}")
        store = self.store(create=True)
        with store.transaction():
            store.set_meta("index_type", kind)
        self.index_type = kind

    def _index_type(self) -> str:
        if self.index_type != "auto":
            return self.index_type
        return self.store().get_meta("index_type") or "auto"

    # --- queries --------------------------------------------------------------------------------

    def vector_for_file(self, path: str) -> np.ndarray:
        """An image's vector: the stored one when the file is indexed and unchanged, else embed."""
        return self.vectors_for_files([path])[0]

    def vectors_for_files(self, paths: list[str]) -> np.ndarray:
        """Each image's vector, as vector_for_file. Those to embed are all decoded before the
        model loads: a file that is no image fails at once, not after seconds of loading."""
        vectors = [self._stored_vector(p) for p in paths]
        todo = [n for n, v in enumerate(vectors) if v is None]
        if not todo:
            return np.stack(cast(list[np.ndarray], vectors))
        recipe = self._recipe_hint() or Recipe()
        decoded = {n: _decode_query(paths[n], recipe) for n in todo}
        embedder = self.embedder()
        for n in todo:
            if embedder.recipe != recipe:  # the hint was wrong: decode with the model's own
                decoded[n] = _decode_query(paths[n], embedder.recipe)
            vectors[n] = embedder.embed(decoded[n].pixels[None])[0]
        return np.stack(cast(list[np.ndarray], vectors))  # every None is embedded now

    def _stored_vector(self, path: str) -> np.ndarray | None:
        """The library's vector of an indexed, unchanged file; None when it must be embedded."""
        path = os.path.abspath(path)
        row = self.store().image_by_path(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise BadQuery(f"cannot read query image {path}: {exc.strerror or exc}") from None
        if row and row["vector"] and (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
            return np.frombuffer(row["vector"], dtype=np.float32)
        return None

    def vector_for_bytes(
        self, data: bytes, max_pixels: int | None, name: str | None = None
    ) -> np.ndarray:
        """An uploaded image's vector, decoded first: a bad upload fails before the model loads.
        `name`: the upload's file name (a camera RAW is read as the CLI reads one)."""
        recipe = self._recipe_hint() or Recipe()
        decoded = decode_bytes(data, recipe, max_pixels, name)
        embedder = self.embedder()
        if embedder.recipe != recipe:
            decoded = decode_bytes(data, embedder.recipe, max_pixels, name)
        return embedder.embed(decoded.pixels[None])[0]

    def query(
        self,
        images: list[str],
        k: int = DEFAULT_K,
        within: str | None = None,
        rotations: bool = False,
    ) -> QueryResult:
        """The nearest library images; `rotations`: also to the query turned or mirrored."""
        if not images:
            raise BadQuery("give at least one query image")
        if rotations:  # search/dups/rotations.py
            return query_turned(self, images, k, within)
        started = time.perf_counter()
        vectors = self.vectors_for_files(images)
        result = self.search_vector(knn.mean_direction(vectors), k, within)
        result.query = [os.path.abspath(p) for p in images]
        result.seconds = time.perf_counter() - started
        return result

    def similar(self, image_id: int, k: int = DEFAULT_K, within: str | None = None) -> QueryResult:
        row = self.store().image(image_id)
        if not row or row["status"] != "ok":
            raise NotFound(f"no indexed image with id {image_id}")
        result = self.search_vector(np.frombuffer(row["vector"], dtype=np.float32), k, within)
        result.query = [row["path"]]
        return result

    def search_vector(self, vector: np.ndarray, k: int, within: str | None = None) -> QueryResult:
        if k < 1:
            raise BadQuery("k must be at least 1")
        store = self.store()
        query = vector.astype(np.float32)[None]
        if within:
            ids = store.ids_under(within)
            vecs = store.vectors_by_ids(ids)
            scores, found = knn.exact_search(query, vecs, ids, k)
        else:
            scores, found = self.vector_index().search(query, k)
        rows = store.images_by_ids([i for i in found[0] if i >= 0], "id, path")
        pairs = [
            (float(s), int(i)) for s, i in zip(scores[0], found[0], strict=True) if int(i) in rows
        ]
        hits = [Hit(rank, i, rows[i]["path"], s) for rank, (s, i) in enumerate(pairs, start=1)]
        bound = store.model()
        return QueryResult([], bound.id if bound else "", hits)

    # --- duplicates -----------------------------------------------------------------------------

    def duplicates(self, options: DupOptions | None = None, progress=None) -> DupReport:
        """Duplicate groups in tiers (search/dups/run.py)."""
        options = options or DupOptions()
        self._refuse_calibrating_read_only(options)
        return run.find_duplicates(self, options, progress)

    def calibration_due(self, options: DupOptions) -> int | None:
        """Known copies a `duplicates(options)` call would embed first, or None (a read-only
        library that would need them is refused here, before anything is said or done)."""
        self._refuse_calibrating_read_only(options)
        return run.calibration_due(self, options)

    def _refuse_calibrating_read_only(self, options: DupOptions) -> None:
        """--threshold auto fits and stores a calibration when none is stored: on a read-only
        library say so before any work."""
        if options.threshold == "auto" and self.store().read_only:
            if run.stored_calibration(self) is None:
                self.store().require_writable(
                    "calibrating the duplicate threshold",
                    "a fixed --threshold (a cosine, e.g. 0.95) only reads",
                )

    def calibrate(
        self,
        precision: float = DEFAULT_PRECISION,
        sample: int | None = None,
        progress=None,
        seed: int = 0,
    ):
        """Refit score normalisation and the duplicate threshold on this library's images
        (sample None: one source per 40 images, 8 to 30)."""
        self.store().require_writable("calibrate")  # refuse before embedding the copies
        calibration, _ = run.run_calibration(self, precision, sample, progress, seed)
        return calibration

    def decide(self, a: str, b: str, kind: str = "distinct") -> dict:
        """Record that files a and b are not duplicates ("distinct") or are to be kept both."""
        self.store().require_writable("recording a decision")
        return mark(self.store(), a, b, kind)

    def undecide(self, a: str, b: str) -> bool:
        """Forget the decision about a and b; True if there was one."""
        self.store().require_writable("recording a decision")
        return unmark(self.store(), a, b)

    def decisions(self) -> list[dict]:
        return list_decisions(self.store())

    def image(self, image_id: int) -> dict | None:
        """An image's row (path, size, width, height, hash, status, ...), or None."""
        return self.store().image(image_id)

    def image_ids(self, paths: list[str]) -> dict[str, int]:
        """path -> id for the paths the library holds."""
        store = self.store()
        return {p: row["id"] for p in paths if (row := store.stat_of(p))}

    # --- upkeep ---------------------------------------------------------------------------------

    def check(self, deep: bool = False, repair: bool = False) -> CheckReport:
        """Whether files, SQLite and the FAISS file agree; with repair, mend what can be."""
        self.close()  # check reads the files as they are, through its own read-only connection
        if repair:
            with self.writing("check --repair"):
                return repair_library(self.directory, deep)
        return check_library(self.directory, deep)

    def export(self, directory: str, overwrite: bool = False) -> ExportSummary:
        """Paths, metadata, vectors and the default keep-list (`keep`) as Parquet files."""
        keep = self.curation().default_keep_ids  # called once the target is known to be free
        return export_parquet(self.store(), directory, overwrite=overwrite, keep=keep)

    def curation(self) -> Curation:
        """Outliers, clusters and keep-lists over this library (search/curate/facade.py)."""
        return Curation(self)

    def flags(self, only: str | None = None, within: str | None = None) -> quality.FlagReport:
        """Quality flags (dark, blurry, ...; `only`: "dark,blurry") from the index-time measures."""
        return quality.report(flag_table.rows(self.store(), within), quality.parse_flags(only))

    # --- facts ----------------------------------------------------------------------------------

    def info(self) -> dict:
        store = self.store()
        counts = store.counts()
        model = store.model()
        vindex = self.vector_index()
        return {
            "library": str(self.directory),
            "model": model.id if model else None,
            "dim": model.dim if model else None,
            # how the vectors were made (a library from before runtimes were recorded: torch),
            # and why that path (runtime.explain); the int8 scales stay in the record
            "runtime": runtime.explain(model.runtime) if model else None,
            "cpu": runtime.cpu_features(),  # the flags that pick the int8 and bf16 kernels
            "images": counts.get("ok", 0),
            "failed": counts.get("failed", 0),
            "index": {
                "type": vindex.kind,
                "vectors": vindex.count,
                "generation": vindex.generation,
            },
            "bytes": store.bytes_on_disk(),
            "calibration": stored[0].summary()
            if (stored := run.stored_calibration(self))
            else None,
        }

    def browser(self) -> Browse:
        """The library's folders, capture-date timeline and pages of images (the page)."""
        return Browse(self.store())


def _decode_query(path: str, recipe: Recipe):
    path = os.path.abspath(path)
    try:
        return decode_file(path, recipe, max_pixels=DEFAULT_MAX_PIXELS)
    except ImageError as exc:
        raise BadQuery(f"query image {path}: {exc}") from None
