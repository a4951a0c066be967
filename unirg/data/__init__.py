"""Study sources, synthetic chest X-rays and the datasets handed to the trainers."""
