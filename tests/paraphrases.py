"""Paraphrase queries for clips of the HumanNet preview: each describes one clip in other words
(never a caption verbatim). Used by the search recall test and ``bench/bench_search_recall.py``."""

PARAPHRASES = {
    "someone smoothing lumber with a woodworking machine": "ego_4ddc86f9-f3a5-4a0b-83f0-9c690b7cc1ad_38119_38247",
    "pressing a shirt flat with a hot steam iron": "ego_c2b3e7ea-fbeb-4491-b5bc-d0dd723496f7_62861_63006",
    "mechanic checks the brakes of a car using a torch": "ego_7abc5ff7-28a3-4904-a5e3-99c9b2e3c085_1251_1379",
    "putting minced beef into a dish": "ego_25123_47_129",
    "playing keyboard instrument exercises with a pencil in hand": "ego_fbe0a401-9bf3-4725-bddb-b2c44472cda0_4312_4473",
    "feeding a page into a printing device": "ego_z025-june-21-22-printer_small_1138_1386",
    "taking apart the controllers of a game console": "ego_z176-sep-05-22-switch_864_1126",
    "removing the water tank from an espresso maker": "ego_r030-12july-nespresso_3621_3794",
    "a man tilling garden earth with a tool": "exo_5dc9bffc84eab9923b4720889c339e92",
    "a host talking into a mic at his desk in a studio": "exo_-wthp8ippva_35",
    "fitness coach explaining exercises on a gym mat": "exo_lwqlwqdonow_17",
    "a cowboy showing off a horse indoors": "exo_wlgrqsphhfe_107",
    "skater doing a jump on his board at the park": "exo_qzpcrojj1dg_19",
    "hauling a big pack along a stony beach": "exo_r_r2q054fsm_115",
    "elderly lady sets a jug of water down": "exo_gqabybr_qo0_64",
    "a child is handed a pink stuffed animal": "exo_0041f063a89d07febf14bca51749ee02",
    "a gentleman escorts a lady to the couch": "exo_3753dfcc015406616765644452c0edc3",
    "someone dressed as a flower clapping": "exo_qsuxyrr3n7o_68",
    "mounting a heatsink onto an electronics board": "ego_factory_134_worker_011_0059_817_990",
    "laying out leaves on a brass tray for a ceremony": "ego_9a30454f-b06b-45b7-a8a0-90d3f4ea2eb1_25741_25920",
    "a woman in a purple jumper shows off her kitchen": "exo_hnjakdrnmfm_64",
    "setting a covered bowl onto a wire shelf": "ego_12147_56_154",
}
