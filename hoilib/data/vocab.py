"""HOI vocabularies: verbs, objects, the valid (verb, object) classes and their text prompts.

The same structure describes HICO-DET (117 verbs, 80 objects, 600 classes; carried in `assets/`) and the
built-in world (`hoilib.data.world.world_vocabulary`). Object 0 is always "person".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class Vocabulary:
    """Attributes:
        name: "hicodet" or "world".
        verbs, objects: class names (object 0 = person).
        hoi_classes: [C, 2] int64 rows (verb, object), in the data set's official HOI order.
        verb_prompts: one text per verb (LAIN: "a photo of a person is riding the object").
        object_prompts: one text per object plus a last one for "nothing" (LAIN's layout prior).
        hoi_prompts: one text per HOI class ("a photo of a person riding a bicycle").
        no_interaction: index of the "no interaction" verb.
    """

    name: str
    verbs: tuple
    objects: tuple
    hoi_classes: np.ndarray
    verb_prompts: tuple
    object_prompts: tuple
    hoi_prompts: tuple
    no_interaction: int

    @property
    def num_verbs(self) -> int:
        return len(self.verbs)

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @property
    def num_classes(self) -> int:
        return int(self.hoi_classes.shape[0])

    @property
    def correspondence(self) -> np.ndarray:
        """[C, 3] rows (hoi, object, verb): the `correspondence` field of the annotation format."""
        c = np.arange(self.num_classes)
        return np.stack([c, self.hoi_classes[:, 1], self.hoi_classes[:, 0]], 1).astype(np.int64)

    @property
    def object_verb_to_hoi(self) -> np.ndarray:
        """[O, V] int64: HOI class of (object, verb), -1 where the combination is not a class."""
        out = np.full((self.num_objects, self.num_verbs), -1, np.int64)
        out[self.hoi_classes[:, 1], self.hoi_classes[:, 0]] = np.arange(self.num_classes)
        return out

    def hoi_name(self, h: int) -> str:
        v, o = self.hoi_classes[h]
        return f"{self.verbs[v]} {self.objects[o]}"


@lru_cache(maxsize=1)
def hicodet_vocabulary() -> Vocabulary:
    """HICO-DET's categories as the official LAIN code uses them (COCO-80 object order, person = 0)."""
    cat = json.loads((ASSETS / "hico_categories.json").read_text())
    prompts = json.loads((ASSETS / "prompts.json").read_text())
    return Vocabulary(
        name="hicodet", verbs=tuple(cat["verbs"]), objects=tuple(cat["objects"]),
        hoi_classes=np.asarray(cat["hoi_classes"], np.int64), verb_prompts=tuple(cat["lain_verb_prompts"]),
        object_prompts=tuple(cat["lain_object_prompts"]), hoi_prompts=tuple(p.lower() for p in prompts),
        no_interaction=int(cat["no_interaction_verb_index"]),
    )
