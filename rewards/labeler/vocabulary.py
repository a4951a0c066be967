"""Mention vocabularies of the 14 CheXpert observations, written from radiology report language."""

from __future__ import annotations

OBSERVATIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
    "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices", "No Finding",
)
TOP5: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# Observations derived from the others, not stated findings: left out wherever findings are counted.
DERIVED: tuple[str, ...] = ("No Finding",)

# Phrases that name a finding outright (regex fragments, matched on lower-case text at word boundaries).
MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        r"widen(?:ed|ing) (?:of the )?(?:superior )?mediastin\w*", r"mediastinal widening",
        r"enlarged cardiomediastin\w*", r"cardiomediastinal enlargement", r"mediastinal (?:mass|lymphadenopathy)",
    ),
    "Cardiomegaly": (
        r"cardiomegaly", r"cardiac enlargement", r"enlarged (?:heart|cardiac (?:silhouette|shadow|size))",
        r"enlargement of the (?:heart|cardiac silhouette)", r"cardiac silhouette enlargement",
    ),
    "Lung Opacity": (
        r"opaci(?:ty|ties|fication|fications|fied)", r"infiltrat(?:e|es|ion|ive)", r"air ?space (?:disease|process)",
        r"ground[- ]glass", r"hazy|haziness", r"reticul(?:ar|onodular) (?:opacit\w*|pattern)",
    ),
    "Lung Lesion": (
        r"(?<!calcified )(?<!granulomatous )nodul(?:e|es|ar|arity)", r"(?<!soft tissue )mass(?:es)?",
        r"(?:lung|pulmonary|parenchymal|cavitary) lesions?", r"neoplasm", r"malignan(?:cy|t)", r"carcinoma",
        r"tumou?r", r"metasta(?:sis|ses|tic)",
    ),
    "Edema": (r"edema", r"oedema"),
    "Consolidation": (r"consolidat(?:ion|ions|ive|ed)",),
    "Pneumonia": (r"pneumonias?", r"bronchopneumonia", r"pneumonitis", r"(?<!urinary tract )infection",
                  r"infectious process"),
    "Atelectasis": (r"atelecta(?:sis|ses|tic)", r"(?:lobar|lobe|lung|segmental) collapse",
                    r"collapse of the (?:\w+ )?(?:lobe|lung)"),
    "Pneumothorax": (r"(?:hydro|hemo|haemo)?pneumothora(?:x|ces)", r"pneumothoraxes"),
    "Pleural Effusion": (
        r"(?<!pericardial )effusions?", r"pleural fluid", r"(?:hydro|hemo|haemo)thorax",
        r"fluid (?:in|within) the (?:pleural space|fissures?)",
    ),
    "Pleural Other": (
        r"pleural (?:thickening|scar\w*|plaques?|calcifications?|fibrosis)", r"fibrothorax",
        r"thickening of the pleura", r"pleuro-?parenchymal (?:scar\w*|thickening)", r"apical (?:pleural )?caps?",
    ),
    "Fracture": (r"fractur(?:e|es|ed)", r"\bfx\b"),
    "Support Devices": (
        r"(?:endotracheal|tracheostomy|enteric|nasogastric|orogastric|feeding|chest|gastric|ng|og|et) tubes?",
        r"\bett\b", r"picc(?: line)?", r"(?:central|venous|arterial|subclavian|jugular|midline|port) (?:line|catheter)s?",
        r"catheters?", r"pacemakers?", r"pacer", r"(?:aicd|icd)\b", r"defibrillators?", r"(?:pacer|pacing|icd) leads?",
        r"port-?a-?cath", r"(?:chest|power|infusion|subcutaneous|mediport) ports?", r"mediport",
        r"swan[- ]ganz", r"\bsheath\b", r"(?:surgical|pleural|mediastinal) drains?", r"stents?",
        r"(?:prosthetic|replacement|mechanical) (?:heart |aortic |mitral )?valves?",
        r"valve (?:replacement|prosthesis)", r"annuloplasty", r"loop recorder", r"lvad", r"balloon pump",
        r"(?:vp|ventriculoperitoneal) shunt", r"tip (?:projects|terminates|overlies|is (?:in|at|seen)|in the|at the)",
    ),
}

# Substrings that every mention of an observation contains: a cheap filter before its patterns run.
# Keep each phrase in MENTIONS covered by one of these when adding phrases.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("mediastin",),
    "Cardiomegaly": ("cardi", "heart"),
    "Lung Opacity": ("opaci", "infiltrat", "space", "glass", "haz", "reticul"),
    "Lung Lesion": ("nodul", "mass", "lesion", "neoplas", "malignan", "carcinom", "tumo", "metasta"),
    "Edema": ("edema",),
    "Consolidation": ("consolidat",),
    "Pneumonia": ("pneumon", "infect"),
    "Atelectasis": ("atelecta", "collapse"),
    "Pneumothorax": ("pneumothora",),
    "Pleural Effusion": ("effusion", "fluid", "thorax"),
    "Pleural Other": ("pleura", "fibrothorax", "cap"),
    "Fracture": ("fractur", "fx"),
    "Support Devices": (
        "tube", "ett", "picc", "line", "catheter", "pace", "icd", "defibrillat", "lead", "port", "swan",
        "sheath", "drain", "stent", "valve", "annuloplasty", "recorder", "lvad", "balloon", "shunt", "tip",
    ),
}

# Anatomy whose description decides an observation: "heart size is normal" (negative), "the
# cardiomediastinal silhouette is enlarged" (positive), "borderline heart size" (uncertain).
ATTRIBUTES: dict[str, tuple[str, str, str, str]] = {
    # observation: (anatomy, enlarged words, normal words, borderline words)
    "Cardiomegaly": (
        r"heart(?: size)?|cardiac (?:silhouette|size|shadow|contours?)",
        r"enlarged|enlargement|large|increased|prominent",
        r"normal|within normal limits|unremarkable|not enlarged|upper normal(?! limits)",
        r"borderline|top(?:-| )normal|upper limits? of normal|mildly prominent",
    ),
    "Enlarged Cardiomediastinum": (
        r"cardiomediastinal (?:silhouette|contours?|size)|mediastin(?:um|al (?:silhouette|contours?|width))",
        r"enlarged|widened|wide|prominent",
        r"normal|within normal limits|unremarkable|not (?:enlarged|widened)",
        r"borderline|upper limits? of normal",
    ),
}

# Abnormalities outside the 14 observations. A report that states one is not a normal study, so it does
# not get No Finding (CheXpert's rule keeps No Finding for studies with nothing but devices; a stated
# granuloma, hyperinflation or degenerative spine is still a finding).
OTHER_ABNORMALITIES: tuple[str, ...] = (
    r"granulom\w*", r"scar(?:ring|s)?", r"calcifi\w+", r"hyperinfla\w+", r"hyperexpan\w+", r"hyperaera\w+",
    r"emphysema\w*", r"copd", r"chronic obstructive", r"hypoinfla\w+", r"low lung volumes?", r"tortu\w+",
    r"ectatic", r"ectasia", r"aneurysm\w*", r"degenerative", r"osteophyt\w+", r"spondylos\w+", r"scoliosis",
    r"kyphos\w+", r"arthritis", r"arthritic", r"elevat(?:ed|ion) (?:of the )?(?:\w+ )?(?:hemi)?diaphragm",
    r"fibros\w+", r"fibrotic", r"bronchiectasis", r"hernia", r"(?:surgical |vascular )?clips?", r"sternotomy",
    r"post-?(?:surgical|operative)", r"interstitial (?:markings|prominence|disease|lung disease)",
    r"(?:increased|prominent|coarse(?:ned)?) (?:interstitial |bronchovascular |lung )?markings",
    r"osteopenia", r"deformity", r"cholecystectomy", r"(?:large|small) lung volumes", r"thickening",
    r"lymphadenopathy", r"adenopathy", r"atheroscler\w+", r"prominen(?:t|ce)",
)
