"""Write the example datasets, deterministically (seeded): `python examples/make_examples.py`.

- arithmetic/{train,valid}.jsonl: 2-digit addition in exactly the built-in model's format ("12+34=" -> "46"),
  pairs (a, b) with 10 <= a, b <= 99 split by a seeded shuffle, so no prompt is in both files.
- tools-arith/{train,valid}.jsonl: 3-digit addition for `builtin:tiny-tools` ("123+456=" -> "579"), each row
  declaring an `add` tool (OpenAI function-tool schema) that the job runs over HTTP (tools-arith/job.json);
  no pair is in both files.
  tools-arith/grader.json (exact match + partial credit on the final answer; tool use itself earns nothing) and
  tools-arith/job.json (the whole job: model, files, grader, hyperparameters, the http `add` tool) and
  tools-arith/tools.json (the tool spec alone, for `rft-tui jobs create --tools`) are written too.
- gene-ranking/{train,valid}.jsonl: synthetic phenotype lists -> a ranked list of candidate genes
  (after OpenAI's rare-disease RFT demo); each row's `reference_answer` is the causal gene, and no gene
  appears in both files. gene-ranking/grader.json: a `multi` grader (top-1, top-5, rank credit) built from
  graders/gene_ranking.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240607
ARITH_TRAIN, ARITH_VALID = 1500, 200
TOOLS_TRAIN, TOOLS_VALID = 2000, 200
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add", "description": "The exact sum of two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]},
    },
}

# Illustrative gene -> phenotype associations (textbook-level, simplified; not for clinical use).
GENES: dict[str, list[str]] = {
    "FBN1": ["Arachnodactyly", "Ectopia lentis", "Aortic root dilatation", "Tall stature", "Pectus excavatum"],
    "CFTR": ["Recurrent pneumonia", "Pancreatic insufficiency", "Elevated sweat chloride", "Meconium ileus",
             "Failure to thrive"],
    "DMD": ["Proximal muscle weakness", "Calf pseudohypertrophy", "Elevated creatine kinase", "Gowers sign",
            "Dilated cardiomyopathy"],
    "HBB": ["Microcytic anemia", "Splenomegaly", "Jaundice", "Growth delay", "Frontal bossing"],
    "F8": ["Hemarthrosis", "Prolonged aPTT", "Easy bruising", "Prolonged bleeding after surgery"],
    "HTT": ["Chorea", "Cognitive decline", "Depression", "Caudate atrophy", "Dysarthria"],
    "PAH": ["Intellectual disability", "Musty body odor", "Hypopigmentation", "Seizures", "Eczema"],
    "COL1A1": ["Recurrent fractures", "Blue sclerae", "Hearing loss", "Dentinogenesis imperfecta",
               "Short stature"],
    "NF1": ["Cafe-au-lait spots", "Axillary freckling", "Neurofibromas", "Lisch nodules", "Optic glioma"],
    "TSC2": ["Hypomelanotic macules", "Facial angiofibromas", "Infantile spasms", "Cortical tubers",
             "Renal angiomyolipoma"],
    "MECP2": ["Developmental regression", "Stereotypic hand wringing", "Loss of speech", "Acquired microcephaly",
              "Breathing irregularities"],
    "SMN1": ["Hypotonia", "Tongue fasciculations", "Areflexia", "Symmetric proximal weakness",
             "Respiratory insufficiency"],
    "FMR1": ["Intellectual disability", "Macroorchidism", "Long face", "Large ears", "Autistic behavior"],
    "PKD1": ["Bilateral renal cysts", "Hypertension", "Flank pain", "Hematuria", "Hepatic cysts"],
    "LDLR": ["Tendon xanthomas", "Markedly elevated LDL cholesterol", "Premature coronary artery disease",
             "Corneal arcus"],
    "BRCA1": ["Early-onset breast cancer", "Ovarian cancer", "Family history of breast cancer",
              "Triple-negative breast carcinoma"],
    "RET": ["Medullary thyroid carcinoma", "Pheochromocytoma", "Hyperparathyroidism", "Aganglionic megacolon"],
    "VHL": ["Retinal hemangioblastoma", "Cerebellar hemangioblastoma", "Renal cell carcinoma",
            "Pheochromocytoma", "Pancreatic cysts"],
    "ATP7B": ["Kayser-Fleischer rings", "Hepatic cirrhosis", "Tremor", "Low serum ceruloplasmin", "Dystonia"],
    "HFE": ["Elevated transferrin saturation", "Hepatomegaly", "Skin hyperpigmentation", "Arthralgia",
            "Diabetes mellitus"],
    "GBA1": ["Splenomegaly", "Thrombocytopenia", "Bone pain", "Erlenmeyer flask deformity", "Hepatomegaly"],
    "HEXA": ["Cherry red spot", "Exaggerated startle response", "Developmental regression", "Hypotonia",
             "Seizures"],
    "GLA": ["Angiokeratomas", "Acroparesthesia", "Hypohidrosis", "Proteinuria", "Corneal verticillata"],
    "NPC1": ["Vertical supranuclear gaze palsy", "Ataxia", "Splenomegaly", "Dysphagia", "Cataplexy"],
    "ABCD1": ["Adrenal insufficiency", "Progressive spastic paraparesis", "White matter abnormalities",
              "Behavioral changes"],
    "PTPN11": ["Pulmonary valve stenosis", "Short stature", "Webbed neck", "Hypertelorism", "Cryptorchidism"],
    "COL3A1": ["Arterial rupture", "Thin translucent skin", "Easy bruising", "Uterine rupture",
               "Acrogeria"],
    "SCN1A": ["Febrile seizures", "Myoclonic seizures", "Status epilepticus", "Developmental delay", "Ataxia"],
    "KCNQ1": ["Prolonged QT interval", "Syncope", "Torsades de pointes", "Sudden cardiac arrest"],
    "MYH7": ["Hypertrophic cardiomyopathy", "Exertional dyspnea", "Chest pain", "Ventricular arrhythmia"],
    "TTR": ["Peripheral neuropathy", "Restrictive cardiomyopathy", "Carpal tunnel syndrome",
            "Orthostatic hypotension", "Vitreous opacities"],
    "SERPINA1": ["Early-onset emphysema", "Neonatal cholestasis", "Low alpha-1 antitrypsin",
                 "Hepatic cirrhosis"],
    "G6PD": ["Hemolytic anemia after fava beans", "Neonatal jaundice", "Dark urine", "Bite cells"],
    "OTC": ["Hyperammonemia", "Vomiting", "Lethargy", "Elevated urinary orotic acid", "Protein aversion"],
    "MUT": ["Metabolic acidosis", "Elevated methylmalonic acid", "Vomiting", "Hypotonia", "Failure to thrive"],
    "GAA": ["Hypertrophic cardiomyopathy in infancy", "Macroglossia", "Hypotonia", "Elevated creatine kinase",
            "Respiratory failure"],
    "IDUA": ["Coarse facies", "Corneal clouding", "Hepatosplenomegaly", "Dysostosis multiplex",
             "Umbilical hernia"],
    "FGFR3": ["Rhizomelic short stature", "Macrocephaly", "Frontal bossing", "Trident hand",
              "Midface hypoplasia"],
    "CHD7": ["Coloboma", "Choanal atresia", "Heart defect", "Genital hypoplasia", "Ear anomalies"],
    "TCOF1": ["Malar hypoplasia", "Mandibular hypoplasia", "Downslanting palpebral fissures",
              "Conductive hearing loss", "Lower eyelid coloboma"],
    "JAG1": ["Bile duct paucity", "Butterfly vertebrae", "Posterior embryotoxon", "Peripheral pulmonary stenosis",
             "Triangular face"],
    "ELN": ["Supravalvular aortic stenosis", "Elfin facies", "Hypercalcemia", "Overfriendly personality",
            "Stellate iris"],
    "UBE3A": ["Happy demeanor", "Severe speech impairment", "Ataxic gait", "Seizures", "Microcephaly"],
    "NSD1": ["Overgrowth", "Macrocephaly", "Advanced bone age", "Pointed chin", "Learning disability"],
    "CDKL5": ["Early infantile epileptic encephalopathy", "Hypotonia", "Cortical visual impairment",
              "Poor eye contact"],
    "POLG": ["Progressive external ophthalmoplegia", "Refractory seizures", "Liver failure", "Ataxia",
             "Peripheral neuropathy"],
    "MT-ND4": ["Subacute painless vision loss", "Central scotoma", "Optic atrophy", "Young adult male"],
    "RYR1": ["Malignant hyperthermia", "Central core myopathy", "Hypotonia", "Scoliosis"],
    "CLCN1": ["Myotonia", "Muscle stiffness relieved by exercise", "Muscle hypertrophy", "Warm-up phenomenon"],
    "PMP22": ["Distal muscle weakness", "Pes cavus", "Reduced nerve conduction velocity", "Distal sensory loss",
              "Hammer toes"],
    "SOD1": ["Upper motor neuron signs", "Lower motor neuron signs", "Muscle fasciculations", "Dysphagia"],
    "APC": ["Hundreds of colorectal polyps", "Congenital hypertrophy of retinal pigment epithelium",
            "Desmoid tumor", "Osteomas"],
    "MLH1": ["Early-onset colorectal cancer", "Endometrial cancer", "Microsatellite instability",
             "Family history of colon cancer"],
    "TP53": ["Childhood sarcoma", "Early-onset breast cancer", "Adrenocortical carcinoma", "Brain tumor"],
    "WT1": ["Wilms tumor", "Aniridia", "Genitourinary anomalies", "Nephrotic syndrome"],
}
INSTRUCTIONS = ("You are a clinical genetics assistant. Given a patient's phenotypes, list the most likely "
                "causal genes, best first, one gene symbol per line (at most 10).")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def arithmetic(rng: random.Random) -> tuple[list[dict], list[dict]]:
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    rng.shuffle(pairs)

    def row(a: int, b: int) -> dict:
        return {"messages": [{"role": "user", "content": f"{a}+{b}="}], "answer": str(a + b)}

    train = [row(a, b) for a, b in pairs[:ARITH_TRAIN]]
    valid = [row(a, b) for a, b in pairs[ARITH_TRAIN:ARITH_TRAIN + ARITH_VALID]]
    return train, valid


def tools_arithmetic(rng: random.Random) -> tuple[list[dict], list[dict]]:
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < TOOLS_TRAIN + TOOLS_VALID:
        pairs.add((rng.randint(100, 999), rng.randint(100, 999)))
    ordered = sorted(pairs)
    rng.shuffle(ordered)

    def row(a: int, b: int) -> dict:
        return {"messages": [{"role": "user", "content": f"{a}+{b}="}], "tools": [ADD_TOOL], "answer": str(a + b)}

    return [row(a, b) for a, b in ordered[:TOOLS_TRAIN]], [row(a, b) for a, b in ordered[TOOLS_TRAIN:]]


ARITH_GRADER = {
    "type": "multi", "name": "arithmetic",
    "graders": {
        "exact": {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                  "reference": "{{item.answer}}", "operation": "eq"},
        "close": {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
                  "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"},
    },
    "calculate_output": "exact + (1 - exact) * 0.5 * close",
}
# The tools demo's job (`rft-tui demo --task tools` uploads the files and points `add` at the tool server it
# starts; the url here is where `python -m rft_tui.tool_server --port 8765` would listen).
TOOLS_JOB = {
    "model": "builtin:tiny-tools", "training_file": "train.jsonl", "validation_file": "valid.jsonl", "seed": 0,
    "suffix": "tools-demo",
    "method": {"type": "reinforcement", "reinforcement": {
        "grader": ARITH_GRADER,
        "hyperparameters": {"batch_size": 8, "num_generations": 8, "learning_rate": 1e-3, "lora_r": 16,
                            "lora_alpha": 32, "beta": 0.0, "temperature": 1.0, "max_steps": 50,
                            "eval_interval": 5, "eval_samples": 100, "max_episode_steps": 3,
                            "max_completion_length": 48},
        "tools": {"add": {"type": "http", "url": "http://127.0.0.1:8765/add", "timeout_s": 5, "max_retries": 2}},
    }},
}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def gene_cases(rng: random.Random, genes: list[str], cases_per_gene: int, prefix: str) -> list[dict]:
    rows = []
    for gene in genes:
        for _ in range(cases_per_gene):
            terms = GENES[gene]
            picked = rng.sample(terms, k=max(3, len(terms) - rng.randint(0, 2)))
            age = rng.choice(["newborn", "infant", "child", "adolescent", "adult"])
            sex = rng.choice(["female", "male"])
            rows.append({
                "messages": [
                    {"role": "developer", "content": INSTRUCTIONS},
                    {"role": "user", "content": f"Patient: {age}, {sex}.\nPhenotypes:\n"
                                                + "\n".join(f"- {t}" for t in picked)},
                ],
                "reference_answer": gene,
                "case_id": f"{prefix}-{len(rows) + 1:03d}",
            })
    rng.shuffle(rows)
    return rows


def gene_ranking(rng: random.Random) -> tuple[list[dict], list[dict]]:
    genes = sorted(GENES)
    rng.shuffle(genes)
    valid_genes, train_genes = genes[:15], genes[15:]
    return gene_cases(rng, train_genes, 1, "train"), gene_cases(rng, valid_genes, 1, "valid")


def gene_ranking_grader() -> dict:
    """The gene-ranking `multi` grader: top-1 and top-5 accuracy beside the rank credit, which is the reward."""
    source = (HERE / "graders" / "gene_ranking.py").read_text(encoding="utf-8")
    if "\nTOP_K = None\n" not in source:
        raise SystemExit("examples/graders/gene_ranking.py must set TOP_K = None on a line of its own")

    def python(name: str, top_k: int | None) -> dict:
        text = source if top_k is None else source.replace("\nTOP_K = None\n", f"\nTOP_K = {top_k}\n", 1)
        return {"type": "python", "name": name, "source": text}

    return {"type": "multi", "name": "gene_ranking",
            "graders": {"top_1": python("top_1", 1), "top_5": python("top_5", 5),
                        "rank_credit": python("rank_credit", None)},
            "calculate_output": "rank_credit"}


def main() -> None:
    rng = random.Random(SEED)
    train, valid = arithmetic(rng)
    write_jsonl(HERE / "arithmetic" / "train.jsonl", train)
    write_jsonl(HERE / "arithmetic" / "valid.jsonl", valid)
    train, valid = tools_arithmetic(random.Random(SEED + 2))
    write_jsonl(HERE / "tools-arith" / "train.jsonl", train)
    write_jsonl(HERE / "tools-arith" / "valid.jsonl", valid)
    write_json(HERE / "tools-arith" / "grader.json", ARITH_GRADER)
    write_json(HERE / "tools-arith" / "job.json", TOOLS_JOB)
    write_json(HERE / "tools-arith" / "tools.json", TOOLS_JOB["method"]["reinforcement"]["tools"])
    train, valid = gene_ranking(random.Random(SEED + 1))
    write_jsonl(HERE / "gene-ranking" / "train.jsonl", train)
    write_jsonl(HERE / "gene-ranking" / "valid.jsonl", valid)
    (HERE / "gene-ranking" / "grader.json").write_text(json.dumps(gene_ranking_grader(), indent=2) + "\n",
                                                        encoding="utf-8")


if __name__ == "__main__":
    main()
