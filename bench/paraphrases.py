"""A paraphrase set for recall quality: facts a user states, and questions that ask for them in other words.

Each question avoids the fact's key words where English allows (``instrument`` for ``cello``, ``job`` for
``nurse``), so a match on shared words alone does not find the fact: finding it takes meaning. Written for
this project; used by ``bench/local_recall.py``.
"""

from __future__ import annotations

__all__ = ["PAIRS"]

PAIRS: list[tuple[str, str]] = [
    ("My sister's name is Ines and she plays the cello.", "What instrument does my sister play?"),
    ("I work as a nurse at the Santa Maria hospital.", "What is my job?"),
    ("I'm allergic to peanuts, so I never eat satay.", "Is there any food that makes me ill?"),
    ("We adopted a beagle puppy called Biscuit last spring.", "Do I have a dog?"),
    ("I grew up in Porto, by the Douro river.", "Which city is my hometown?"),
    ("My daughter Clara turns seven in March.", "How old is my child?"),
    ("I drive a blue Toyota Corolla to the office.", "What car do I own?"),
    ("On weekends I go bouldering at the climbing gym.", "What sport do I practise on Saturdays?"),
    ("I'm vegetarian and I haven't eaten meat for ten years.", "What is my diet like?"),
    ("My husband Tomas teaches mathematics at a secondary school.", "What does my spouse do for a living?"),
    ("I moved to Berlin in 2019 for a job at a startup.", "When did I relocate to Germany?"),
    ("Coffee keeps me awake, so I only drink green tea after noon.", "What do I drink in the afternoon?"),
    ("I'm learning Japanese and take lessons every Tuesday evening.", "Which language am I studying?"),
    ("My favourite author is Ursula K. Le Guin.", "Which writer do I like best?"),
    ("I broke my left wrist skiing in January.", "Did I have an injury this winter?"),
    ("Our team deploys the backend on Kubernetes in AWS.", "Where does our service run in production?"),
    ("I'm terrified of flying, so I take the train whenever I can.", "How do I prefer to travel?"),
    ("I run a small bakery that sells sourdough bread.", "What kind of business do I own?"),
    ("My mother lives in Lisbon and I visit her every August.", "Where does my mum live?"),
    ("I play the piano in a jazz trio on Friday nights.", "Do I perform music anywhere?"),
    ("I have two cats, Miso and Tofu.", "What pets do I have?"),
    ("I'm saving money to buy an apartment next year.", "What am I putting money aside for?"),
    ("My brother Rui is a firefighter in Coimbra.", "What is my sibling's profession?"),
    ("I usually wake up at 5:30 to go running before work.", "What time do I get out of bed?"),
    ("I support Benfica and never miss a match.", "Which football club do I follow?"),
    ("I studied chemical engineering at the University of Porto.", "What did I major in at college?"),
    ("My laptop is a ThinkPad running Fedora Linux.", "What computer do I use?"),
    ("I can't stand horror movies; I prefer comedies.", "What films do I enjoy watching?"),
    ("We're planning our honeymoon in Iceland next June.", "Where do we go after the wedding?"),
    ("My grandmother taught me to knit scarves when I was ten.", "Who showed me how to make woollen things?"),
    ("I'm lactose intolerant, so I drink oat milk.", "Can I have dairy products?"),
    ("My best friend Joana is getting married in Madeira.", "Whose wedding am I attending?"),
    ("I volunteer at an animal shelter on Sunday mornings.", "What do I do for charity?"),
    ("I write my backend services in Go and the tooling in Python.", "Which programming languages do I use?"),
    ("My father passed away two years ago, in the autumn.", "Is my dad still alive?"),
    ("I keep a vegetable garden with tomatoes and courgettes.", "Do I grow anything at home?"),
]
