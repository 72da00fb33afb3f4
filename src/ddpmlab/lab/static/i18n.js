// The page's words in English and French; elements carry data-i18n="key".
"use strict";

const WORDS = {
  title: ["ddpmlab lab", "ddpmlab lab"],
  tab_data: ["Data", "Données"],
  tab_forward: ["Forward process", "Processus direct"],
  tab_train: ["Training", "Entraînement"],
  tab_reverse: ["Reverse process", "Processus inverse"],
  tab_samplers: ["Samplers", "Échantillonneurs"],
  data_intro: ["Choose the examples the model learns from: a built-in shape, a file, a word, or your own drawing. The points appear in data units.",
    "Choisissez les exemples que le modèle apprend : une forme intégrée, un fichier, un mot, ou votre propre dessin. Les points s'affichent dans les unités des données."],
  shape: ["Built-in data", "Données intégrées"],
  use: ["Use", "Utiliser"],
  word: ["A word (text:)", "Un mot (text:)"],
  upload_points: ["Points file (.csv, .txt, .npy)", "Fichier de points (.csv, .txt, .npy)"],
  upload_picture: ["Picture (.png, .jpg): its dark pixels", "Image (.png, .jpg) : ses pixels sombres"],
  draw: ["Draw with the mouse, then use the drawing", "Dessinez à la souris, puis utilisez le dessin"],
  clear: ["Clear", "Effacer"],
  use_drawing: ["Use the drawing", "Utiliser le dessin"],
  current: ["Current data", "Données actuelles"],
  forward_intro: ["q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (Ho et al. 2020, Eq. 4): move t to watch the data turn into noise. Right: ᾱ_t and the signal-to-noise ratio, the current t marked.",
    "q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (Ho et al. 2020, éq. 4) : déplacez t pour voir les données devenir du bruit. À droite : ᾱ_t et le rapport signal sur bruit, le t courant marqué."],
  schedule: ["Schedule", "Planning"],
  source_schedule: ["The course's schedule (sigmoid, T = 150)", "Le planning du cours (sigmoïde, T = 150)"],
  kept: ["x_T still holds √ᾱ_T = {k} of x_0", "x_T garde encore √ᾱ_T = {k} de x_0"],
  not_noise: ["— x_T is not noise: sampling from N(0, I) starts somewhere the model never saw.",
    "— x_T n'est pas du bruit : échantillonner depuis N(0, I) part d'où le modèle n'a jamais été."],
  train_intro: ["Training (Ho et al. 2020, Algorithm 1) runs in its own process and writes a run directory that `ddpmlab sample`, `evaluate` and `figures` open. Samples of the EMA model refresh at each checkpoint.",
    "L'entraînement (Ho et al. 2020, algorithme 1) tourne dans son propre processus et écrit un dossier de run que `ddpmlab sample`, `evaluate` et `figures` ouvrent. Les échantillons du modèle EMA se rafraîchissent à chaque point de sauvegarde."],
  steps: ["Training steps", "Pas d'entraînement"],
  train: ["Train", "Entraîner"],
  stop: ["Stop", "Arrêter"],
  resume: ["Resume", "Reprendre"],
  images_time: ["Digits train a U-Net: expect several minutes on a laptop CPU.", "Les chiffres entraînent un U-Net : comptez plusieurs minutes sur le processeur d'un portable."],
  loss: ["training loss", "perte d'entraînement"],
  samples: ["samples", "échantillons"],
  data: ["data", "données"],
  state_idle: ["Press Train.", "Appuyez sur Entraîner."],
  state_running: ["training", "entraînement"],
  state_done: ["done", "terminé"],
  state_stopped: ["stopped: continue with Resume or `ddpmlab train --out RUN --resume`", "arrêté : continuez avec Reprendre ou `ddpmlab train --out RUN --resume`"],
  state_error: ["error", "erreur"],
  runs: ["Runs in the lab's folder", "Runs du dossier du lab"],
  open: ["Open", "Ouvrir"],
  reverse_intro: ["The DDPM chain (Ho et al. 2020, Algorithm 2) from x_T to x_0: the slider walks it; lines follow a few points. Below, the score s(x, t) = −ε̂ / √(1 − ᾱ_t), learned (blue) and exact (orange, for a Gaussian mixture).",
    "La chaîne DDPM (Ho et al. 2020, algorithme 2) de x_T à x_0 : le curseur la parcourt ; des lignes suivent quelques points. Dessous, le score s(x, t) = −ε̂ / √(1 − ᾱ_t), appris (bleu) et exact (orange, pour un mélange de gaussiennes)."],
  reverse_step: ["steps taken", "pas effectués"],
  score_t: ["score at t", "score à t"],
  learned: ["learned", "appris"],
  exact: ["exact", "exact"],
  no_exact: ["no exact score: known in closed form for a Gaussian mixture only (gaussians8)", "pas de score exact : connu en forme close pour un mélange de gaussiennes seulement (gaussians8)"],
  samplers_intro: ["Each sampler at K steps (the ODE chooses its own), scored against held-out data beside the floor: the same metric between two real sets. Bounds: 1-NNA ≤ 0.55, W1 ≤ 1.3 × floor.",
    "Chaque échantillonneur à K pas (l'EDO choisit les siens), mesuré contre des données mises de côté à côté du plancher : la même mesure entre deux ensembles réels. Bornes : 1-NNA ≤ 0,55, W1 ≤ 1,3 × plancher."],
  run_samplers: ["Compare", "Comparer"],
  seconds: ["s", "s"],
  floor: ["floor", "plancher"],
  pass: ["within the bounds", "dans les bornes"],
  fail: ["outside the bounds", "hors des bornes"],
  no_run: ["Train a run or open one first.", "Entraînez ou ouvrez d'abord un run."],
  real: ["real", "réelles"],
  working: ["working…", "calcul…"],
};

const I18n = (() => {
  let lang = localStorage.getItem("ddpmlab-lang") || "en";
  const t = (key, vars = {}) => {
    const w = WORDS[key];
    let s = w ? w[lang === "fr" ? 1 : 0] : key;
    for (const [k, v] of Object.entries(vars)) s = s.replace("{" + k + "}", v);
    return s;
  };
  function apply() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  }
  function set(l) { lang = l; localStorage.setItem("ddpmlab-lang", l); apply(); }
  return { t, apply, set, get lang() { return lang; } };
})();
